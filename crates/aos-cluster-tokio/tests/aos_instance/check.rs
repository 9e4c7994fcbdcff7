//! `check` and `run` on configuration files: the effective configuration,
//! every problem by file and line, warnings first.

use super::*;

#[test]
fn check_prints_the_effective_configuration_and_names_the_line_of_a_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), 1, "sqlite::memory:");
    let out = Command::new(BIN).arg("check").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).unwrap();
    for needle in ["idle_timeout = \"1m\"", "admin = \"127.0.0.1:0\"", "herd_control = true"] {
        assert!(printed.contains(needle), "{needle} missing from\n{printed}");
    }

    let text =
        std::fs::read_to_string(&path).unwrap().replace("snapshot_ttl = \"100ms\"", "snapshot_ttl = \"1h\"");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(BIN).arg("check").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let message = String::from_utf8(out.stderr).unwrap();
    let expected = format!(
        "{}:13: instance: `snapshot_ttl` (1h) must be shorter than `member_ttl` (3s)",
        path.display()
    );
    assert!(message.starts_with(&expected), "{message}");

    let out = Command::new(BIN).args(["run", "/nonexistent/instance.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr).unwrap().starts_with("/nonexistent/instance.toml: cannot read"));

    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8(out.stdout).unwrap().contains("Exit codes"));
    let out = Command::new(BIN).arg("rn").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// `aos-instance check FILE` with `text` as the file: the exit code and stderr.
fn check(dir: &Path, name: &str, text: &str) -> (Option<i32>, String) {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    let out = Command::new(BIN).arg("check").arg(&path).output().unwrap();
    (out.status.code(), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn check_and_run_name_every_unknown_setting_and_wrong_type_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(write_config(dir.path(), 1, "sqlite::memory:")).unwrap();
    // Each typo or wrong type alone: refused, naming file, line and setting.
    let cases = [
        (
            "typo.toml",
            good.replace("shutdown_grace", "idle_timout"),
            ":4: idle_timout: unknown setting `idle_timout`",
        ),
        (
            "admn.toml",
            good.replace("admin =", "admn ="),
            ":2: admn: unknown setting `admn` (did you mean `admin`?)",
        ),
        ("table.toml", format!("{good}\n[instanse]\nid = 1\n"), ":15: instanse: unknown setting `instanse`"),
        (
            "nested.toml",
            good.replace("max_sessions = 100", "max_sessions = 100\nlimits = { max_memberz = 3 }"),
            ":11: instance.limits.max_memberz: unknown setting",
        ),
        (
            "type.toml",
            good.replace("max_sessions = 100", "max_sessions = \"100\""),
            ":10: instance.max_sessions: invalid type: string \"100\", expected u32",
        ),
        ("id.toml", good.replace("id = 1", "id = \"one\""), ":7: instance.id: invalid type: string \"one\""),
        (
            "listen.toml",
            good.replace("listen = \"127.0.0.1:0\"", "listen = \"localhost:2712\""),
            ":3: listen: invalid socket address syntax",
        ),
    ];
    for (name, text, expected) in &cases {
        let (code, stderr) = check(dir.path(), name, text);
        assert_eq!(code, Some(2), "{name} accepted: {stderr}");
        let path = dir.path().join(name);
        assert!(stderr.starts_with(&format!("{}{expected}", path.display())), "{name}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{name}: one problem, one line: {stderr}");
    }

    // All of them at once: every one reported in one run, by line, by `check` and `run` alike.
    let all = good
        .replace("admin =", "admn =")
        .replace("shutdown_grace", "idle_timout")
        .replace("listen = \"127.0.0.1:0\"", "listen = \"localhost:2712\"")
        .replace("id = 1", "id = \"one\"")
        .replace("max_sessions = 100", "max_sessions = \"100\"")
        + "\n[instanse]\nid = 1\n";
    let path = dir.path().join("all.toml");
    std::fs::write(&path, &all).unwrap();
    for command in ["check", "run"] {
        let out = Command::new(BIN).arg(command).arg(&path).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{command}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        let lines: Vec<&str> = stderr.lines().collect();
        let expected = [
            ":2: admn",
            ":3: listen",
            ":4: idle_timout",
            ":7: instance.id",
            ":10: instance.max_sessions",
            ":15: instanse",
        ];
        assert_eq!(lines.len(), expected.len(), "{command}: {stderr}");
        for (line, part) in lines.iter().zip(expected) {
            assert!(
                line.starts_with(&format!("{}{part}", path.display())),
                "{command}: {line:?} in\n{stderr}"
            );
        }
        assert!(out.stdout.is_empty(), "{command} printed on stdout");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warnings_come_first_on_stderr_from_check_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("cluster.db").display());
    let text = std::fs::read_to_string(write_config(dir.path(), 1, &db)).unwrap();
    let path = dir.path().join("open.toml");
    let text = text
        .replace("admin = \"127.0.0.1:0\"", "admin = \"0.0.0.0:0\"\nadmin_token = \"env:AOS_TEST_TOKEN\"");
    std::fs::write(&path, text).unwrap();
    let warning = format!("{}: warning: `admin` 0.0.0.0:0 is not on loopback", path.display());

    let out = Command::new(BIN).arg("check").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8(out.stderr).unwrap().starts_with(&warning));

    // `run`: the first line on stderr, before any log line (info on).
    let mut child = Command::new(BIN)
        .arg("run")
        .arg(&path)
        .env("RUST_LOG", "info")
        .env("AOS_TEST_TOKEN", "t0ken")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut started = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut started).unwrap();
    assert!(started.starts_with("aos-instance listen="), "{started:?}");
    let stderr = child.stderr.take().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stderr), &mut first).unwrap();
    assert!(first.starts_with(&warning), "{first:?}");
}
