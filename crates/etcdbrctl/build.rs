//! Records the git commit in the binary for `--version`.

fn main() {
    println!("cargo:rerun-if-changed=../../.git/HEAD");
    if let Ok(out) = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        && out.status.success()
    {
        let sha = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        println!("cargo:rustc-env=ETCDBR_GIT_SHA={sha}");
    }
}
