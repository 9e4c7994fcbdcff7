//! The cap as a setting of the `aos-instance` file.

#[cfg(feature = "admin")]
#[test]
fn max_sessions_per_ip_is_an_instance_file_setting_off_by_default() {
    use aos_cluster_tokio::config_file::InstanceFile;
    use std::path::Path;
    let file = |extra: &str| {
        format!(
            "registry = \"sqlite::memory:\"\nlisten = \"127.0.0.1:0\"\n{extra}\n[instance]\nid = 1\n\
             endpoint = \"127.0.0.1:2712\"\ncluster = \"c\"\nmax_sessions = 10\n"
        )
    };
    let plain = InstanceFile::parse(Path::new("i.toml"), &file("")).unwrap();
    assert_eq!(plain.server.max_sessions_per_ip, None);
    assert!(!plain.to_toml().contains("max_sessions_per_ip"), "off is written as absent");
    let capped = InstanceFile::parse(Path::new("i.toml"), &file("max_sessions_per_ip = 20")).unwrap();
    assert_eq!(capped.server.max_sessions_per_ip, Some(20));
    assert!(capped.to_toml().contains("max_sessions_per_ip = 20"), "{}", capped.to_toml());
    let zero = InstanceFile::parse(Path::new("i.toml"), &file("max_sessions_per_ip = 0")).unwrap_err();
    assert_eq!(
        zero.to_string(),
        "i.toml:3: `max_sessions_per_ip` must not be zero (leave it out to switch it off)"
    );
}
