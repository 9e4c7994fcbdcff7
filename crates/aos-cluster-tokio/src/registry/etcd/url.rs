//! The `etcd://` URL.

/// The prefix when the URL names none.
const DEFAULT_PREFIX: &str = "aos-cluster";

/// The parts of an `etcd://` URL.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct EtcdUrl {
    pub(super) endpoints: Vec<String>,
    pub(super) user: Option<(String, String)>,
    pub(super) prefix: String,
}

impl EtcdUrl {
    pub(super) fn parse(url: &str) -> Result<EtcdUrl, String> {
        let rest = url.strip_prefix("etcd://").ok_or("expected `etcd://HOST:PORT[,HOST:PORT...]/PREFIX`")?;
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
        let mut endpoints = Vec::new();
        for host in hosts.split(',') {
            let (name, port) = host
                .rsplit_once(':')
                .ok_or_else(|| format!("`{host}` is not HOST:PORT (etcd's client port is usually 2379)"))?;
            if name.is_empty() || name.contains(['/', '?', '#', ' ']) {
                return Err(format!("`{host}` is not HOST:PORT"));
            }
            port.parse::<u16>().map_err(|_| format!("`{port}` in `{host}` is not a port number"))?;
            endpoints.push(format!("http://{name}:{port}"));
        }
        if path.contains(['?', '#']) {
            return Err("the prefix may not contain `?` or `#` (no parameters are read)".to_owned());
        }
        let prefix = path.trim_end_matches('/');
        let prefix = if prefix.is_empty() { DEFAULT_PREFIX } else { prefix };
        Ok(EtcdUrl { endpoints, user, prefix: prefix.to_owned() })
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
        ] {
            assert!(EtcdUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
