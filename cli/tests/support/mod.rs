//! Running the built `raxe` binary from the CLI integration tests.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

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
