//! More than one process: data-parallel training and search, Horovod's design.
//! MPI launches the ranks (`mpirun -np N rlal ...`, or Slurm's `srun` with PMIx),
//! gives rank and size, and carries CPU collectives; NCCL carries the
//! collectives of CUDA tensors (its unique id broadcast over MPI). Both are loaded
//! at run time ([`mpi`], [`nccl`]), so one binary runs single-process everywhere
//! and multi-process where Open MPI is installed; without the launcher's
//! variables nothing is loaded and rlal behaves exactly as a single process.
//!
//! Each rank sees one GPU: local rank L is given GPU L (the L-th entry of
//! `CUDA_VISIBLE_DEVICES` when set), which is `cuda:0` inside the process.
//! Every collective runs under a watchdog: one that does not complete within
//! `RLAL_DIST_TIMEOUT` seconds (default 1800) ends the rank with an error naming
//! it and the collective, so a dead or stuck rank never leaves the others hanging.
//! `RLAL_DIST_BACKEND` = `auto` (NCCL for CUDA tensors, MPI for CPU tensors) | `mpi`.
pub mod mpi;
pub mod nccl;

use mpi::{Dtype, Mpi};
use nccl::Nccl;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};

/// Errors of the distributed layer.
#[derive(Debug, thiserror::Error)]
pub enum DistError {
    #[error("MPI: {0}")]
    Mpi(String),
    #[error("NCCL: {0}")]
    Nccl(String),
    #[error("{0}")]
    Config(String),
    #[error("libtorch: {0}")]
    Torch(tch::TchError),
    /// A loaded library (`lib`: MPI or NCCL, at `path`) lacks a function rlal calls.
    #[error("{lib}: {path}: no function {name}: {why}")]
    Symbol { lib: &'static str, path: String, name: String, why: String },
    /// The failure of an earlier call, again (NCCL is started once per process).
    #[error(transparent)]
    Earlier(Arc<DistError>),
}

crate::util::from_inner!(tch::TchError => DistError::Torch);

/// No library of a list loads: each path tried, with what the loader said.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{}", .tried.iter().map(|(p, why)| format!("{}: {why}", p.display())).collect::<Vec<_>>().join("; "))]
pub struct LoadError {
    pub tried: Vec<(PathBuf, String)>,
}

/// The processes of a launched job.
pub struct World {
    pub rank: usize,
    pub size: usize,
    /// Rank among the processes of this node (the launcher's local rank).
    pub local_rank: usize,
    /// `RLAL_DIST_BACKEND=mpi`: CUDA tensors are reduced over MPI through host copies.
    mpi_only: bool,
    mpi: Mpi,
    nccl: OnceLock<Result<Nccl, Arc<DistError>>>,
    started: Instant,
}

static WORLD: OnceLock<World> = OnceLock::new();
/// Deadline of the collective in progress (ms since start; 0: none) and its name.
static DEADLINE_MS: AtomicU64 = AtomicU64::new(0);
static CURRENT: Mutex<&'static str> = Mutex::new("");

/// The launcher's view of this process: (rank, size, local rank) from Open MPI's
/// `mpirun` (`OMPI_COMM_WORLD_*`), Slurm's `srun` (`SLURM_PROCID`, in a job step) or
/// PMI (`PMI_RANK`/`PMI_SIZE`, MPICH's launchers); None when not launched.
pub fn launched() -> Option<(usize, usize, usize)> {
    let num = |k: &str| std::env::var(k).ok().and_then(|v| v.trim().parse::<usize>().ok());
    let triple = |r: &str, s: &str, l: &str| Some((num(r)?, num(s)?, num(l).unwrap_or(0)));
    triple("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK")
        .or_else(|| {
            num("SLURM_STEP_ID")?;
            triple("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID")
        })
        .or_else(|| triple("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"))
}

/// The launcher that started this process (`mpirun`, `srun`, `PMI`), as [`launched`] reads it.
pub fn launcher() -> Option<&'static str> {
    let set = |k: &str| std::env::var_os(k).is_some();
    if set("OMPI_COMM_WORLD_SIZE") {
        Some("mpirun")
    } else if set("SLURM_STEP_ID") && set("SLURM_PROCID") {
        Some("srun")
    } else if set("PMI_SIZE") {
        Some("PMI")
    } else {
        None
    }
}

/// The job as a start line names it: "world size 2 (srun, backend MPI)" for a job of
/// 2 ranks launched by `srun` whose tensors on `device` are reduced over MPI;
/// "world size 1 (no launcher)" for a plain process.
pub fn summary(device: tch::Device) -> String {
    match (world(), launcher()) {
        (Some(w), Some(l)) => {
            let backend = if device.is_cuda() && !w.mpi_only { "NCCL" } else { "MPI" };
            format!("world size {} ({l}, backend {backend})", w.size)
        }
        _ => "world size 1 (no launcher)".into(),
    }
}

/// Processes the launcher started on this node (1 when not launched).
pub fn local_size() -> usize {
    let num = |k: &str| std::env::var(k).ok().and_then(|v| v.trim().parse::<usize>().ok());
    if launched().is_none() {
        return 1;
    }
    num("OMPI_COMM_WORLD_LOCAL_SIZE")
        .or_else(|| num("SLURM_NTASKS_PER_NODE"))
        .or_else(|| num("MPI_LOCALNRANKS"))
        .unwrap_or(1)
}

/// Number of NVIDIA GPUs the driver lists (no CUDA initialisation).
fn driver_gpus() -> usize {
    std::fs::read_dir("/proc/driver/nvidia/gpus").map(|d| d.count()).unwrap_or(0)
}

/// Gives local rank `local` one GPU through `CUDA_VISIBLE_DEVICES` (before CUDA starts).
pub fn pin_gpu(local: usize) {
    let visible: Vec<String> = match std::env::var("CUDA_VISIBLE_DEVICES") {
        Ok(v) => v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
        Err(_) => (0..driver_gpus()).map(|i| i.to_string()).collect(),
    };
    if !visible.is_empty() {
        std::env::set_var("CUDA_VISIBLE_DEVICES", &visible[local % visible.len()]);
    }
}

/// Starts MPI when this process was launched by an MPI launcher (once; before any
/// other thread or CUDA work). None when not launched.
pub fn init_from_env() -> Result<Option<&'static World>, DistError> {
    if let Some(w) = WORLD.get() {
        return Ok(Some(w));
    }
    let Some((_, _, local)) = launched() else { return Ok(None) };
    pin_gpu(local);
    let mpi_only = match std::env::var("RLAL_DIST_BACKEND").as_deref() {
        Err(_) | Ok("") | Ok("auto") => false,
        Ok("mpi") => true,
        Ok(v) => {
            return Err(DistError::Config(format!("RLAL_DIST_BACKEND={v}: expected auto or mpi")))
        }
    };
    let (mpi, rank, size) = Mpi::init()?;
    let w = World {
        rank,
        size,
        local_rank: local,
        mpi_only,
        mpi,
        nccl: OnceLock::new(),
        started: Instant::now(),
    };
    let w = WORLD.get_or_init(|| w);
    if size > 1 {
        start_watchdog(w);
    }
    Ok(Some(w))
}

/// Opens the first shared library that loads (globally, all symbols bound now): the
/// path in environment variable `var` alone when it is set, else each of `defaults`.
fn open_library(
    var: &str,
    defaults: &[PathBuf],
) -> Result<(libloading::os::unix::Library, String), LoadError> {
    match std::env::var(var) {
        Ok(p) if !p.is_empty() => open_first(&[p.into()]),
        _ => open_first(defaults),
    }
}

/// Opens the first of `paths` that loads (globally, all symbols bound now): the
/// library and its path, or what every try said.
pub fn open_first(paths: &[PathBuf]) -> Result<(libloading::os::unix::Library, String), LoadError> {
    use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
    let mut tried = Vec::new();
    for p in paths {
        // SAFETY: loading a system library (MPI, NCCL, libtorch's CUDA backend) whose
        // initialisers start no threads.
        match unsafe { Library::open(Some(p), RTLD_NOW | RTLD_GLOBAL) } {
            Ok(l) => return Ok((l, p.display().to_string())),
            Err(e) => {
                // libloading's error says "dlopen failed"; its source holds the loader's reason.
                let why =
                    std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| s.to_string());
                tried.push((p.clone(), why))
            }
        }
    }
    Err(LoadError { tried })
}

/// Function `name` of `lib` (the `kind` of library at `path`, for errors) with C
/// signature `T`.
fn symbol<T: Copy>(
    lib: &libloading::os::unix::Library,
    kind: &'static str,
    path: &str,
    name: &str,
) -> Result<T, DistError> {
    // SAFETY: callers name `T` as the C signature of `name` in the library's header.
    unsafe { lib.get::<T>(name.as_bytes()) }.map(|s| *s).map_err(|e| DistError::Symbol {
        lib: kind,
        path: path.to_string(),
        name: name.to_string(),
        why: e.to_string(),
    })
}

/// The launched world, once [`init_from_env`] found one.
pub fn world() -> Option<&'static World> {
    WORLD.get()
}

/// The world when it has more than one rank.
pub fn parallel() -> Option<&'static World> {
    world().filter(|w| w.size > 1)
}

/// Whether this process writes the job's files and output (rank 0, or not launched).
pub fn is_root() -> bool {
    world().is_none_or(|w| w.rank == 0)
}

fn timeout() -> Duration {
    let s = std::env::var("RLAL_DIST_TIMEOUT").ok().and_then(|v| v.parse::<f64>().ok());
    Duration::from_secs_f64(s.filter(|s| *s > 0.0).unwrap_or(1800.0))
}

fn start_watchdog(w: &'static World) {
    let limit = timeout();
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis(200));
        let d = DEADLINE_MS.load(Ordering::SeqCst);
        if d != 0 && w.started.elapsed().as_millis() as u64 > d {
            let op = *CURRENT.lock().unwrap_or_else(|e| e.into_inner());
            eprintln!(
                "error: rank {} of {}: collective {op} did not complete within {:.0} s (RLAL_DIST_TIMEOUT): another rank has died or stopped; ending this rank",
                w.rank,
                w.size,
                limit.as_secs_f64()
            );
            w.mpi.abort(1);
            std::process::exit(1);
        }
    });
}

impl World {
    /// Runs collective `op` under the watchdog.
    fn guarded<T>(&self, op: &'static str, f: impl FnOnce() -> T) -> T {
        if self.size <= 1 {
            return f();
        }
        *CURRENT.lock().unwrap_or_else(|e| e.into_inner()) = op;
        let deadline = self.started.elapsed() + timeout();
        DEADLINE_MS.store(deadline.as_millis() as u64, Ordering::SeqCst);
        let out = f();
        DEADLINE_MS.store(0, Ordering::SeqCst);
        out
    }

    fn nccl(&self) -> Result<&Nccl, DistError> {
        self.nccl
            .get_or_init(|| {
                self.guarded("ncclCommInitRank", || Nccl::init(&self.mpi, self.rank, self.size))
                    .map_err(Arc::new)
            })
            .as_ref()
            .map_err(|e| DistError::Earlier(e.clone()))
    }

    /// In-place sum over the ranks of a contiguous f32/f64 tensor (on the CPU over MPI,
    /// on a GPU over NCCL, or over MPI through a host copy with `RLAL_DIST_BACKEND=mpi`).
    pub fn allreduce_sum(&self, t: &Tensor) -> Result<(), DistError> {
        self.collective(t, "allreduce", |p, n, d, dev| match dev {
            Device::Cpu => unsafe { self.mpi.allreduce_sum(p, n, d) },
            _ => unsafe { self.nccl()?.allreduce_sum(p, n, d) },
        })
    }

    /// Overwrites `t` (contiguous f32/f64) on every rank with rank `root`'s values.
    pub fn broadcast(&self, t: &Tensor, root: usize) -> Result<(), DistError> {
        self.collective(t, "broadcast", |p, n, d, dev| match dev {
            Device::Cpu => unsafe { self.mpi.bcast(p, n, d, root) },
            _ => unsafe { self.nccl()?.bcast(p, n, d, root) },
        })
    }

    /// Runs `f(pointer, count, dtype, device)` on `t`'s storage, or on a host copy
    /// (CUDA tensors with the MPI backend), under the watchdog.
    fn collective(
        &self,
        t: &Tensor,
        op: &'static str,
        f: impl FnOnce(*mut std::ffi::c_void, usize, Dtype, Device) -> Result<(), DistError>,
    ) -> Result<(), DistError> {
        if self.size <= 1 {
            return Ok(());
        }
        let d = match t.kind() {
            Kind::Float => Dtype::F32,
            Kind::Double => Dtype::F64,
            k => return Err(DistError::Config(format!("{op}: unsupported tensor kind {k:?}"))),
        };
        if !t.is_contiguous() {
            return Err(DistError::Config(format!("{op}: the tensor is not contiguous")));
        }
        let host = self.mpi_only && t.device() != Device::Cpu;
        let buf = if host { t.to_device(Device::Cpu) } else { t.shallow_clone() };
        let n = buf.numel();
        let (ptr, dev) = (buf.data_ptr(), buf.device());
        self.guarded(op, || f(ptr, n, d, dev))?;
        if host {
            tch::no_grad(|| t.shallow_clone().f_copy_(&buf))?;
        }
        Ok(())
    }

    /// Element-wise sum over the ranks of `v` (host values, e.g. per-episode rewards).
    pub fn allreduce_f64(&self, v: &mut [f64]) -> Result<(), DistError> {
        let op = "allreduce";
        // SAFETY: `v` is a valid host slice of f64.
        self.guarded(op, || unsafe {
            self.mpi.allreduce_sum(v.as_mut_ptr() as *mut _, v.len(), Dtype::F64)
        })
    }

    /// Waits for every rank.
    pub fn barrier(&self) -> Result<(), DistError> {
        self.guarded("barrier", || self.mpi.barrier())
    }

    /// Ends the whole job (every rank) with exit code `code`.
    pub fn abort(&self, code: i32) -> ! {
        self.mpi.abort(code);
        std::process::exit(code)
    }

    /// Leaves MPI (the end of a successful run).
    pub fn finalize(&self) {
        self.mpi.finalize();
    }

    /// "rank R of N: " for messages of a multi-rank job; "" otherwise.
    pub fn prefix(&self) -> String {
        if self.size > 1 {
            format!("rank {} of {}: ", self.rank, self.size)
        } else {
            String::new()
        }
    }
}

/// In a multi-rank job: sums `v` over the ranks; otherwise leaves it.
pub fn sum_f64(v: &mut [f64]) -> Result<(), DistError> {
    match parallel() {
        Some(w) => w.allreduce_f64(v),
        None => Ok(()),
    }
}

/// In a multi-rank job: gives every tensor rank 0's values (contiguous copies are
/// broadcast and copied back where a tensor is not contiguous).
pub fn broadcast_all(ts: &[Tensor]) -> Result<(), DistError> {
    let Some(w) = parallel() else { return Ok(()) };
    for t in ts {
        if t.is_contiguous() && matches!(t.kind(), Kind::Float | Kind::Double) {
            w.broadcast(t, 0)?;
            continue;
        }
        let c = t.to_kind(Kind::Double).contiguous();
        w.broadcast(&c, 0)?;
        tch::no_grad(|| t.shallow_clone().f_copy_(&c))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_library_that_does_not_load_names_every_path_tried() {
        let paths = ["/nonexistent/liba.so".into(), "/nonexistent/libb.so".into()];
        let e = super::open_first(&paths).map(|_| ()).unwrap_err();
        assert_eq!(e.tried.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(), paths);
        let text = e.to_string();
        assert!(
            text.starts_with("/nonexistent/liba.so: ") && text.contains("; /nonexistent/libb.so: "),
            "{text}"
        );
        assert!(text.contains("No such file"), "the loader's reason, not 'dlopen failed': {text}");
    }

    #[test]
    fn not_launched_without_launcher_variables() {
        // The test runner is not started by mpirun (CI never sets these).
        if std::env::var_os("OMPI_COMM_WORLD_SIZE").is_none()
            && std::env::var_os("SLURM_STEP_ID").is_none()
            && std::env::var_os("PMI_SIZE").is_none()
        {
            assert_eq!(super::launched(), None);
            assert!(super::is_root());
            assert!(super::parallel().is_none());
            assert!(super::sum_f64(&mut [1.0]).is_ok());
        }
    }
}
