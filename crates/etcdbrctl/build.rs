//! Records the git commit in the binary for `--version`.

fn main() {
    // HEAD names the branch; the commit is in the branch's ref (a commit does not touch HEAD).
    println!("cargo:rerun-if-changed=../../.git/HEAD");
    println!("cargo:rerun-if-changed=../../.git/refs/heads");
    println!("cargo:rerun-if-changed=../../.git/packed-refs");
    if let Ok(out) = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        && out.status.success()
    {
        let sha = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        println!("cargo:rustc-env=ETCDBR_GIT_SHA={sha}");
    }
}
