//! Running the built `raxe` binary from the CLI integration tests.
#![allow(dead_code)]

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const RAXE: &str = env!("CARGO_BIN_EXE_raxe");

/// `raxe --data-dir DATA ARGS...` with quiet logs, plus extra environment variables.
pub fn raxe_env(data: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(RAXE);
    command
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env("RAXE_LOG", "warn");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run raxe")
}

pub fn raxe(data: &Path, args: &[&str]) -> Output {
    raxe_env(data, args, &[])
}

/// As [`raxe`], off the async runtime's threads (receivers run there).
pub async fn raxe_async(data: &Path, args: &[&str]) -> Output {
    raxe_env_async(data, args, &[]).await
}

pub async fn raxe_env_async(data: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let data = data.to_path_buf();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        raxe_env(&data, &args, &env)
    })
    .await
    .unwrap()
}

/// Everything the command printed, stdout then stderr.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub const TOKEN: &str = "12345678-1234-1234-1234-1234567890AB";

pub fn event_line(n: usize, customer: &str) -> String {
    format!(
        r#"{{"event_id":"evt-{n}","timestamp":1769769000123,"threat_detected":true,"severity":"HIGH","rule_ids":["pi-001"],"families":["PI"],"prompt_hash":"sha256:ab","prompt_length":42,"customer_id":"{customer}","mssp_id":"m1","agent_id":"a1"}}"#
    )
}

/// `raxe customer siem configure acme --mssp m1` with `args` after it.
pub fn configure_acme(data: &Path, args: &[&str]) -> Output {
    let mut all = vec!["customer", "siem", "configure", "acme", "--mssp", "m1"];
    all.extend_from_slice(args);
    raxe(data, &all)
}

pub fn configure_splunk(data: &Path, url: &str, token: &str) -> Output {
    configure_splunk_for(data, "acme", url, token)
}

pub fn configure_splunk_for(data: &Path, customer: &str, url: &str, token: &str) -> Output {
    raxe(
        data,
        &[
            "customer",
            "siem",
            "configure",
            customer,
            "--mssp",
            "m1",
            "--type",
            "splunk",
            "--url",
            url,
            "--token",
            token,
            "--flush-interval",
            "0",
            "--timeout",
            "2",
        ],
    )
}

/// A global Splunk destination `all` (every event, whatever its customer).
pub fn configure_global_splunk(data: &Path, url: &str) {
    let out = raxe(
        data,
        &[
            "global",
            "siem",
            "configure",
            "all",
            "--type",
            "splunk",
            "--url",
            url,
            "--token",
            TOKEN,
            "--flush-interval",
            "0",
            "--timeout",
            "2",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
}

pub fn spawn_serve(data: &Path) -> Child {
    spawn_serve_with(data, &[])
}

pub fn spawn_serve_with(data: &Path, extra: &[&str]) -> Child {
    Command::new(RAXE)
        .arg("--data-dir")
        .arg(data)
        .args(["serve", "--poll-interval-ms", "50"])
        .args(extra)
        .env("RAXE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn raxe serve")
}

/// SIGTERM to `raxe serve` (a clean stop), and its exit status.
pub fn terminate(serve: &mut Child) -> std::process::ExitStatus {
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(serve.id() as i32, libc::SIGTERM) };
    serve.wait().unwrap()
}

pub fn write_spool_file(spool: &Path, name: &str, lines: &[String]) {
    let tmp = spool.join(format!("{name}.tmp"));
    fs::write(&tmp, lines.join("\n") + "\n").unwrap();
    fs::rename(&tmp, spool.join(name)).unwrap();
}

pub async fn wait_for(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done()
}
