use super::problems::MAX_PROBLEMS;
use super::settings::default_admin;
use super::*;

const GOOD: &str = r#"registry = "sqlite::memory:"
listen = "127.0.0.1:0"

[instance]
id = 1
endpoint = "127.0.0.1:2712"
cluster = "c"
max_sessions = 10
"#;

#[test]
fn a_minimal_file_gets_every_default() {
    let file = InstanceFile::parse(Path::new("i.toml"), GOOD).unwrap();
    assert_eq!(file.admin, default_admin());
    let printed = file.to_toml();
    for needle in ["idle_timeout = \"1m\"", "max_connections = 10000", "member_ttl = \"30s\""] {
        assert!(printed.contains(needle), "{needle} missing from\n{printed}");
    }
    // What `check` prints reads back as the same configuration.
    assert_eq!(InstanceFile::parse(Path::new("p.toml"), &printed).unwrap(), file);
}

#[test]
fn a_validation_problem_names_file_line_and_field() {
    let text = GOOD.replace("max_sessions = 10", "max_sessions = 0");
    let e = InstanceFile::parse(Path::new("instance.toml"), &text).unwrap_err();
    assert_eq!(e.to_string(), "instance.toml:8: instance: `max_sessions` must not be zero");
}

#[test]
fn a_misspelt_setting_names_its_line() {
    let text = GOOD.replace("max_sessions = 10", "max_sessions = 10\nmax_sesions = 3");
    let e = InstanceFile::parse(Path::new("i.toml"), &text).unwrap_err();
    let shown = e.to_string();
    assert!(shown.starts_with("i.toml:9: instance.max_sesions: unknown setting `max_sesions`"), "{shown}");
    assert!(!shown.contains("FileError"), "{shown}");
}

#[test]
fn a_bad_value_names_its_line_and_field() {
    let text = GOOD.replace("max_sessions = 10", "max_sessions = 10\nmember_ttl = \"5 parsecs\"");
    let e = InstanceFile::parse(Path::new("i.toml"), &text).unwrap_err();
    let shown = e.to_string();
    assert!(shown.starts_with("i.toml:9: instance.member_ttl: `5 parsecs`: expected"), "{shown}");
    let text = GOOD.replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:0\"\nidle_timeout = \"soon\"");
    let shown = InstanceFile::parse(Path::new("i.toml"), &text).unwrap_err().to_string();
    assert!(shown.starts_with("i.toml:3: idle_timeout: `soon`"), "{shown}");
}

#[test]
fn the_shipped_sample_files_are_valid() {
    for (name, text) in [
        ("instance-1.toml", include_str!("../../config/instance-1.toml")),
        ("instance-2.toml", include_str!("../../config/instance-2.toml")),
        ("instance-3.toml", include_str!("../../config/instance-3.toml")),
    ] {
        let file = InstanceFile::parse(Path::new(name), text).unwrap_or_else(|e| panic!("{e}"));
        assert!(file.admin.ip().is_loopback(), "{name}");
    }
}

fn problems_of(text: &str) -> Vec<String> {
    let e = InstanceFile::parse(Path::new("i.toml"), text).unwrap_err();
    e.to_string().lines().map(str::to_owned).collect()
}

#[test]
fn an_unknown_setting_anywhere_names_file_line_and_setting() {
    let text = GOOD.replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:0\"\nidle_timout = \"5s\"");
    assert_eq!(
        problems_of(&text),
        ["i.toml:3: idle_timout: unknown setting `idle_timout` (did you mean `idle_timeout`?)"]
    );
    let text = format!("admn = \"127.0.0.1:9\"\n{GOOD}");
    assert_eq!(problems_of(&text), ["i.toml:1: admn: unknown setting `admn` (did you mean `admin`?)"]);
    let text = format!("{GOOD}\n[instanse]\nid = 2\n");
    assert_eq!(
        problems_of(&text),
        ["i.toml:10: instanse: unknown setting `instanse` (did you mean `instance`?)"]
    );
    let text = format!("{GOOD}\n[instance.limits]\nmax_memberz = 3\n");
    assert_eq!(
        problems_of(&text),
        ["i.toml:11: instance.limits.max_memberz: unknown setting `max_memberz` (did you mean `max_members`?)"]
    );
    let text = format!("{GOOD}fan_out = {{ live = 4, bogus = 1 }}\n");
    assert_eq!(problems_of(&text), ["i.toml:9: instance.fan_out.bogus: unknown setting `bogus`"]);
}

#[test]
fn a_value_of_the_wrong_type_names_its_line_and_field() {
    let text = GOOD.replace("max_sessions = 10", "max_sessions = \"100\"");
    assert_eq!(
        problems_of(&text),
        ["i.toml:8: instance.max_sessions: invalid type: string \"100\", expected u32"]
    );
    let text = GOOD.replace("id = 1", "id = \"one\"");
    let shown = problems_of(&text);
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert!(shown[0].starts_with("i.toml:5: instance.id: invalid type: string \"one\""), "{shown:?}");
    let text = GOOD.replace("listen = \"127.0.0.1:0\"", "listen = \"localhost:2712\"");
    let shown = problems_of(&text);
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert!(shown[0].starts_with("i.toml:2: listen: invalid socket address syntax"), "{shown:?}");
    let text = GOOD.replace("registry = \"sqlite::memory:\"", "registry = 7");
    let shown = problems_of(&text);
    assert!(shown[0].starts_with("i.toml:1: registry: invalid type: integer `7`"), "{shown:?}");
}

#[test]
fn every_problem_is_reported_in_one_run_by_line() {
    let text = r#"registry = "sqlite::memory:"
admn = "127.0.0.1:9"
listen = "localhost:2712"
idle_timout = "5s"
max_connections = 0

[instance]
id = "one"
endpoint = "127.0.0.1:2712"
cluster = "c"
max_sessions = "100"
member_ttl = "5 parsecs"

[instanse]
id = 2
"#;
    let shown = problems_of(text);
    let starts = [
        "i.toml:2: admn: unknown setting",
        "i.toml:3: listen: invalid socket address syntax",
        "i.toml:4: idle_timout: unknown setting",
        "i.toml:5: `max_connections` must not be zero",
        "i.toml:8: instance.id: invalid type",
        "i.toml:11: instance.max_sessions: invalid type",
        "i.toml:12: instance.member_ttl: `5 parsecs`: expected",
        "i.toml:14: instanse: unknown setting",
    ];
    assert_eq!(shown.len(), starts.len(), "{shown:#?}");
    for (line, start) in shown.iter().zip(starts) {
        assert!(line.starts_with(start), "{line:?} should start with {start:?}\nall: {shown:#?}");
    }
}

#[test]
fn a_missing_required_setting_is_named_and_the_rest_still_checked() {
    let text = GOOD.replace("id = 1\n", "").replace("max_sessions = 10", "max_sessions = 10\nbogus = 1");
    let shown = problems_of(&text);
    assert_eq!(
        shown,
        [
            "i.toml:4: instance.id: required setting missing",
            "i.toml:8: instance.bogus: unknown setting `bogus`"
        ]
    );
    let shown = problems_of(&GOOD.replace("registry = \"sqlite::memory:\"\n", ""));
    assert_eq!(shown, ["i.toml: registry: required setting missing"]);
    let shown = problems_of("registry = \"sqlite::memory:\"\n");
    assert_eq!(
        shown,
        ["i.toml: listen: required setting missing", "i.toml: instance: required setting missing"]
    );
}

#[test]
fn not_toml_at_all_names_its_line() {
    let shown = problems_of("registry = \"sqlite::memory:\"\nlisten = = 3\n");
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert!(shown[0].starts_with("i.toml:2: not valid TOML"), "{shown:?}");
    let garbage: String = (0..500).map(|i| format!("key{i} = {i}\n")).collect();
    let shown = problems_of(&format!("{GOOD}{garbage}"));
    assert_eq!(shown.len(), MAX_PROBLEMS, "bounded");
}

#[test]
fn an_admin_endpoint_off_loopback_with_a_token_is_valid_with_a_warning() {
    let text = format!("admin = \"0.0.0.0:9711\"\nadmin_token = \"env:T\"\n{GOOD}");
    let file = InstanceFile::parse(Path::new("i.toml"), &text).unwrap();
    let warnings = file.warnings();
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("not on loopback"), "{warnings:?}");
    assert!(InstanceFile::parse(Path::new("i.toml"), GOOD).unwrap().warnings().is_empty());
}

#[test]
fn a_bad_registry_url_is_refused() {
    let text = GOOD.replace("sqlite::memory:", "mysql://x");
    let e = InstanceFile::parse(Path::new("i.toml"), &text).unwrap_err();
    assert!(e.to_string().starts_with("i.toml:1: `registry`: expected"), "{e}");
    assert!(e.to_string().contains("etcd://"), "{e}");
    let text = GOOD.replace("sqlite::memory:", "etcd://10.0.0.1:2379,10.0.0.2:2379/aos");
    let file = InstanceFile::parse(Path::new("i.toml"), &text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(file.registry, "etcd://10.0.0.1:2379,10.0.0.2:2379/aos");
}
