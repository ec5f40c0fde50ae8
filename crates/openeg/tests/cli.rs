//! The `openeg` binary as an operator meets it: `credentials` and the log lines of `serve`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("openeg-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The binary with a clean environment: no OPENEG_* of the caller leaks in.
fn openeg(data_dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_openeg"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("OPENEG_") || k == "NO_COLOR" {
            c.env_remove(k);
        }
    }
    c.env("OPENEG_DATA_DIR", data_dir)
        .env("OPENEG_LISTEN", "127.0.0.1:0")
        .env("RUST_BACKTRACE", "0");
    c
}

#[test]
fn credentials_show_secret_never_creates_a_credential() {
    let dir = temp_dir("creds");
    let data = dir.join("data");
    let out = openeg(&data)
        .args(["credentials", "--show-secret"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("openeg serve"),
        "says how to create one: {err}"
    );
    assert!(
        !data.exists(),
        "credentials must not create {}",
        data.display()
    );

    // With a credential present it only prints it, secret included on request.
    std::fs::create_dir_all(&data).unwrap();
    let file = data.join("credentials.toml");
    let text = "[[credentials]]\naccess_key = \"AKCLI\"\nsecret_key = \"SKCLI-secret\"\n\
                project_id = \"0123456789abcdef0123456789abcdef\"\ndomain_id = \"d\"\n";
    std::fs::write(&file, text).unwrap();
    let out = openeg(&data)
        .args(["credentials", "--show-secret"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("AKCLI") && stdout.contains("SKCLI-secret"),
        "{stdout}"
    );
    let out = openeg(&data).args(["credentials"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("SKCLI-secret"));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        text,
        "file untouched"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `serve` until its start log line, stops it with SIGTERM and returns (stdout, stderr).
#[cfg(unix)]
fn serve_and_stop(data: &Path, args: &[&str]) -> (String, String) {
    let mut child: Child = openeg(data)
        .arg("serve")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !lines.iter().any(|l: &String| l.contains("openeg started")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => lines.push(l),
            Err(_) => {
                let _ = child.kill();
                panic!("no start line; stderr so far: {lines:?}");
            }
        }
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    reader.join().unwrap();
    lines.extend(rx.try_iter());
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    assert!(exit.success(), "exit {exit:?}; stderr: {lines:?}");
    (stdout, lines.join("\n"))
}

#[cfg(unix)]
#[test]
fn serve_logs_start_and_shutdown_as_plain_text_when_not_a_terminal() {
    let dir = temp_dir("text");
    let data = dir.join("data");
    let (stdout, stderr) = serve_and_stop(&data, &[]);
    assert!(
        !stderr.contains('\x1b'),
        "no ANSI escapes into a pipe: {stderr:?}"
    );
    assert!(
        stdout.contains("openeg listening on http://127.0.0.1:"),
        "{stdout}"
    );
    let start = stderr
        .lines()
        .find(|l| l.contains("openeg started"))
        .unwrap();
    for want in [
        "listen=127.0.0.1:",
        "store=\"sqlite\"",
        "node=openeg-0",
        "version=",
        "data_dir=",
    ] {
        assert!(start.contains(want), "{want} missing from {start}");
    }
    assert!(stderr.contains("shutdown requested"), "{stderr}");
    assert!(stderr.contains("openeg stopped"), "{stderr}");
    // The development credential was created; its secret is in the file only.
    let creds = std::fs::read_to_string(data.join("credentials.toml")).unwrap();
    let secret = creds
        .lines()
        .find_map(|l| l.strip_prefix("secret_key = "))
        .unwrap()
        .trim_matches('"');
    assert!(!secret.is_empty());
    assert!(!stdout.contains(secret) && !stderr.contains(secret));
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(unix)]
#[test]
fn serve_logs_json_lines() {
    let dir = temp_dir("json");
    let data = dir.join("data");
    let (_, stderr) = serve_and_stop(&data, &["--log-format", "json"]);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    let start = lines
        .iter()
        .find(|v| {
            v["fields"]["message"]
                .as_str()
                .is_some_and(|m| m == "openeg started")
        })
        .expect("start line");
    assert_eq!(start["level"], "INFO");
    assert_eq!(start["fields"]["store"], "sqlite");
    assert_eq!(start["fields"]["node"], "openeg-0");
    assert!(lines
        .iter()
        .any(|v| v["fields"]["message"] == "openeg stopped"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unknown_log_format_is_refused() {
    let dir = temp_dir("badfmt");
    let out = openeg(&dir.join("data"))
        .args(["serve", "--log-format", "xml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!dir.join("data").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
