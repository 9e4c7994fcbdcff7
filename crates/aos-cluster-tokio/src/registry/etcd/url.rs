//! The `etcd://` URL.

/// The prefix when the URL names none.
const DEFAULT_PREFIX: &str = "aos-cluster";

/// The parts of an `etcd://` URL.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct EtcdUrl {
    pub(super) endpoints: Vec<String>,
    pub(super) user: Option<(String, String)>,
    pub(super) prefix: String,
    pub(super) tls: Option<EtcdTls>,
}

/// TLS to etcd, as the URL's parameters name it (etcdctl's flags):
/// `cacert=PATH` (the CA that signed etcd's certificate, PEM; TLS is on when
/// it is given), `cert=PATH` and `key=PATH` (a client certificate and its
/// key, for etcd's `--client-cert-auth`).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct EtcdTls {
    pub(super) cacert: String,
    pub(super) identity: Option<(String, String)>,
}

impl EtcdUrl {
    pub(super) fn parse(url: &str) -> Result<EtcdUrl, String> {
        let rest = url.strip_prefix("etcd://").ok_or("expected `etcd://HOST:PORT[,HOST:PORT...]/PREFIX`")?;
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (user, hosts) = match authority.rsplit_once('@') {
            Some((user, hosts)) => {
                let (name, password) = user.split_once(':').unwrap_or((user, ""));
                if name.is_empty() {
                    return Err("empty user name before `@`".to_owned());
                }
                (Some((name.to_owned(), password.to_owned())), hosts)
            }
            None => (None, authority),
        };
        let tls = parse_tls(query)?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut endpoints = Vec::new();
        for host in hosts.split(',') {
            let (name, port) = host
                .rsplit_once(':')
                .ok_or_else(|| format!("`{host}` is not HOST:PORT (etcd's client port is usually 2379)"))?;
            if name.is_empty() || name.contains(['/', '?', '#', ' ']) {
                return Err(format!("`{host}` is not HOST:PORT"));
            }
            port.parse::<u16>().map_err(|_| format!("`{port}` in `{host}` is not a port number"))?;
            endpoints.push(format!("{scheme}://{name}:{port}"));
        }
        if path.contains('#') {
            return Err("the prefix may not contain `#`".to_owned());
        }
        let prefix = path.trim_end_matches('/');
        let prefix = if prefix.is_empty() { DEFAULT_PREFIX } else { prefix };
        Ok(EtcdUrl { endpoints, user, prefix: prefix.to_owned(), tls })
    }
}

/// The URL's parameters: `cacert`, `cert`, `key`; anything else is an
/// error (a misspelt `cacert` must not mean plain text).
fn parse_tls(query: &str) -> Result<Option<EtcdTls>, String> {
    let (mut cacert, mut cert, mut key) = (None, None, None);
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').ok_or_else(|| format!("`{pair}` is not NAME=VALUE"))?;
        if value.is_empty() {
            return Err(format!("`{name}` needs a path"));
        }
        let slot = match name {
            "cacert" => &mut cacert,
            "cert" => &mut cert,
            "key" => &mut key,
            other => return Err(format!("unknown parameter `{other}` (known: cacert, cert, key)")),
        };
        if slot.replace(value.to_owned()).is_some() {
            return Err(format!("`{name}` given twice"));
        }
    }
    let identity = match (cert, key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => return Err("`cert` and `key` go together".to_owned()),
    };
    match (cacert, identity) {
        (Some(cacert), identity) => Ok(Some(EtcdTls { cacert, identity })),
        (None, Some(_)) => Err("a client certificate needs `cacert` (TLS to etcd)".to_owned()),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_endpoints_user_and_prefix() {
        let url = EtcdUrl::parse("etcd://10.0.0.1:2379,[::1]:2380,etcd.example:2379/clusters/eu").unwrap();
        assert_eq!(
            url,
            EtcdUrl {
                endpoints: vec![
                    "http://10.0.0.1:2379".to_owned(),
                    "http://[::1]:2380".to_owned(),
                    "http://etcd.example:2379".to_owned()
                ],
                user: None,
                prefix: "clusters/eu".to_owned(),
                tls: None,
            }
        );
        let url = EtcdUrl::parse("etcd://aos:s3cret@h:2379").unwrap();
        assert_eq!(url.user, Some(("aos".to_owned(), "s3cret".to_owned())));
        assert_eq!(url.prefix, DEFAULT_PREFIX);
        assert_eq!(EtcdUrl::parse("etcd://h:2379/p/").unwrap().prefix, "p");
        for bad in [
            "etcd://",
            "etcd://h",
            "etcd://h:port/p",
            "etcd://h:2379,/p",
            "etcd://:2379/p",
            "etcd://h:1/p?x=1",
            "etcd://h:1/p?cacert=",
            "etcd://h:1/p?cacert=a&cacert=b",
            "etcd://h:1/p?cacert=a&cert=c",
            "etcd://h:1/p?cert=c&key=k",
            "etcd://h:1/p?cacrt=a",
            "etcd://h:1/p#x",
        ] {
            assert!(EtcdUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tls_parameters_switch_to_https_and_name_the_files() {
        let url = EtcdUrl::parse("etcd://h:2379,g:2379/p?cacert=/ca.pem&cert=/c.pem&key=/c.key").unwrap();
        assert_eq!(url.endpoints, ["https://h:2379", "https://g:2379"]);
        assert_eq!(url.prefix, "p");
        assert_eq!(
            url.tls,
            Some(EtcdTls {
                cacert: "/ca.pem".to_owned(),
                identity: Some(("/c.pem".to_owned(), "/c.key".to_owned()))
            })
        );
        let url = EtcdUrl::parse("etcd://h:2379?cacert=/ca.pem").unwrap();
        assert_eq!((url.prefix.as_str(), url.tls.unwrap().identity), (DEFAULT_PREFIX, None));
    }
}
