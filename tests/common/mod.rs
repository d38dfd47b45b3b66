//! Helpers of the multi-process and checkpoint tests (`mod common;` in each).
#![allow(dead_code)]
use std::path::Path;
use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_rlal");

/// Whether Open MPI's `mpirun` is installed; without it the tests say so and pass,
/// unless `RLAL_REQUIRE_MPI=1` (set by `tools/test.sh`): then they fail.
pub fn have_mpirun() -> bool {
    let ok = Command::new("mpirun").arg("--version").output().is_ok_and(|o| {
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("Open MPI")
    });
    if !ok {
        assert!(
            std::env::var("RLAL_REQUIRE_MPI").as_deref() != Ok("1"),
            "RLAL_REQUIRE_MPI=1 but Open MPI's mpirun is not installed (tools/setup.sh --mpi)"
        );
        eprintln!("skipping: Open MPI's mpirun is not installed (tools/setup.sh --mpi)");
    }
    ok
}

/// Open MPI's transport settings for oversubscribed CPU runs in containers.
pub fn ompi_env(c: &mut Command) -> &mut Command {
    c.env("OMPI_MCA_btl", "self,vader,tcp").env("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
}

/// `mpirun -np n rlal args...` (as root, oversubscribed: 2-core machines).
pub fn mpirun(n: usize, args: &[&str]) -> Command {
    let mut c = Command::new("mpirun");
    c.args(["--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", &n.to_string()])
        .arg(BIN)
        .args(args);
    ompi_env(&mut c);
    c
}

pub fn out(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// The initializers of ONNX file `p` by name, sorted.
pub fn weights(p: &Path) -> Vec<(String, Vec<f32>)> {
    let g = rlal::onnx::load(p).unwrap();
    let mut w: Vec<(String, Vec<f32>)> = g
        .values
        .iter()
        .filter_map(|v| v.init.as_ref().and_then(|t| t.to_f32()).map(|t| (v.name.clone(), t)))
        .collect();
    w.sort_by(|a, b| a.0.cmp(&b.0));
    w
}

/// PIDs and ranks (from environment variable `rank_var`) of the rlal processes whose
/// command line contains `tag`.
pub fn rank_pids(tag: &str, rank_var: &str) -> Vec<(u32, usize)> {
    let mut v = Vec::new();
    let key = format!("{rank_var}=");
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if !cmd.contains(tag) || !cmd.starts_with(BIN) {
            continue;
        }
        let env = std::fs::read(e.path().join("environ")).unwrap_or_default();
        let env = String::from_utf8_lossy(&env).to_string();
        if let Some(r) = env
            .split('\0')
            .find_map(|kv| kv.strip_prefix(key.as_str()))
            .and_then(|r| r.parse().ok())
        {
            v.push((pid, r));
        }
    }
    v
}
