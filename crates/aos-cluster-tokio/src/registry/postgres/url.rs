//! The URL's TLS parameters, which tokio-postgres does not take as they are.

pub(super) fn needs_tls(mode: &str) -> bool {
    matches!(mode, "require" | "verify-ca" | "verify-full")
}

/// The URL's TLS parameters, taken out: tokio-postgres refuses `verify-ca`,
/// `verify-full` and `sslrootcert`, so a mode that needs TLS reaches it as
/// `require` and the verification is ours.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct SslParams {
    /// The URL for tokio-postgres.
    pub(super) url: String,
    pub(super) mode: Option<String>,
    pub(super) rootcert: Option<String>,
}

impl SslParams {
    pub(super) fn split(url: &str) -> Result<SslParams, String> {
        let mut mode = None;
        let mut rootcert = None;
        let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
        let (base, params, separator) = if is_url {
            match url.split_once('?') {
                Some((base, query)) => (base, query, '&'),
                None => (url, "", '&'),
            }
        } else {
            ("", url, ' ')
        };
        let mut kept = Vec::new();
        for param in params.split(separator).filter(|p| !p.trim().is_empty()) {
            let (key, value) = param.split_once('=').unwrap_or((param, ""));
            let (key, value) = (key.trim(), value.trim());
            let value = if is_url { percent_decode(value) } else { value.trim_matches('\'').to_owned() };
            match key {
                "sslmode" => {
                    if !matches!(
                        value.as_str(),
                        "disable" | "allow" | "prefer" | "require" | "verify-ca" | "verify-full"
                    ) {
                        return Err(format!("sslmode={value} is not a libpq sslmode"));
                    }
                    if needs_tls(&value) {
                        kept.push("sslmode=require".to_owned());
                    } else {
                        // Without TLS support in the connector, tokio-postgres's `prefer`
                        // and `allow` connect in plain text; `disable` says so.
                        kept.push("sslmode=disable".to_owned());
                    }
                    mode = Some(value);
                }
                "sslrootcert" => rootcert = Some(value),
                _ => kept.push(param.trim().to_owned()),
            }
        }
        let url = if is_url {
            if kept.is_empty() {
                base.to_owned()
            } else {
                format!("{base}?{}", kept.join("&"))
            }
        } else {
            kept.join(" ")
        };
        Ok(SslParams { url, mode, rootcert })
    }
}

/// `%XX` escapes of a URL query value (a path in `sslrootcert`).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_taken_out_of_the_url() {
        let got = SslParams::split(
            "postgres://u@127.0.0.1:5432/db?application_name=x&sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem",
        )
        .unwrap();
        assert_eq!(got.url, "postgres://u@127.0.0.1:5432/db?application_name=x&sslmode=require");
        assert_eq!(got.mode.as_deref(), Some("verify-full"));
        assert_eq!(got.rootcert.as_deref(), Some("/tmp/ca.pem"));

        let plain = SslParams::split("postgres://u@h/db").unwrap();
        assert_eq!((plain.url.as_str(), plain.mode, plain.rootcert), ("postgres://u@h/db", None, None));

        let prefer = SslParams::split("postgresql://u@h/db?sslmode=prefer").unwrap();
        assert_eq!(prefer.url, "postgresql://u@h/db?sslmode=disable");

        let pairs = SslParams::split("host=h user=u sslmode=verify-ca sslrootcert=/ca.pem").unwrap();
        assert_eq!(pairs.url, "host=h user=u sslmode=require");
        assert_eq!(pairs.mode.as_deref(), Some("verify-ca"));
        assert_eq!(pairs.rootcert.as_deref(), Some("/ca.pem"));

        assert!(SslParams::split("postgres://h/db?sslmode=sometimes").is_err());
    }
}
