//! Registry URLs: which backend a URL names, and how it is shown.

use super::RegistryError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum UrlKind {
    Sqlite,
    Postgres,
    Etcd,
}

pub(super) fn url_kind(url: &str) -> Option<UrlKind> {
    if url == "sqlite::memory:" || url.starts_with("sqlite://") {
        Some(UrlKind::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Some(UrlKind::Postgres)
    } else if url.starts_with("etcd://") {
        Some(UrlKind::Etcd)
    } else {
        None
    }
}

#[allow(dead_code)] // used only by builds without one of the backends
pub(super) fn missing_feature(url: &str, feature: &str) -> RegistryError {
    RegistryError::BadUrl {
        url: redact_password(url),
        reason: format!(
            "this build of aos-cluster-tokio has no {feature} backend; \
             enable its cargo feature `{feature}`"
        ),
    }
}

/// `url` with the password of `user:password@` and of a `password=` query
/// parameter replaced by `***`, so errors and logs can name the registry.
pub fn redact_password(url: &str) -> String {
    let mut shown = url.to_owned();
    if let Some(scheme_end) = shown.find("://").map(|i| i + 3) {
        let authority_end = shown[scheme_end..].find(['/', '?']).map_or(shown.len(), |i| scheme_end + i);
        if let Some(at) = shown[scheme_end..authority_end].rfind('@').map(|i| scheme_end + i) {
            if let Some(colon) = shown[scheme_end..at].find(':').map(|i| scheme_end + i) {
                shown.replace_range(colon + 1..at, "***");
            }
        }
    }
    if let Some(query_start) = shown.find('?') {
        let (head, query) = shown.split_at(query_start + 1);
        let query: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        shown = format!("{head}{}", query.join("&"));
    }
    shown
}
