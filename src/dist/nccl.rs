//! NCCL, loaded at run time (`libnccl.so.2` of the `nvidia-nccl-cu13` wheel that
//! the torch wheel depends on, or `RLAL_NCCL_LIB`): GPU collectives, as in
//! Horovod. Rank 0's unique id is broadcast over MPI; each rank's communicator
//! uses its process's current CUDA device (rlal pins one GPU per rank, see
//! [`super::pin_gpu`]), and collectives run on the legacy default stream, the
//! stream libtorch's kernels use, so they are ordered with the backward pass
//! before them and the SGD step after them.
use super::mpi::{Dtype, Mpi};
use super::DistError;
use libloading::os::unix::Library;
use std::ffi::{c_char, c_int, c_void, CStr};

#[repr(C)]
#[derive(Clone, Copy)]
struct UniqueId([u8; 128]);

type Comm = *mut c_void;
type GetUniqueId = unsafe extern "C" fn(*mut UniqueId) -> c_int;
type CommInitRank = unsafe extern "C" fn(*mut Comm, c_int, UniqueId, c_int) -> c_int;
type AllReduce = unsafe extern "C" fn(
    *const c_void,
    *mut c_void,
    usize,
    c_int,
    c_int,
    Comm,
    *mut c_void,
) -> c_int;
type Broadcast = unsafe extern "C" fn(
    *const c_void,
    *mut c_void,
    usize,
    c_int,
    c_int,
    Comm,
    *mut c_void,
) -> c_int;
type ErrorString = unsafe extern "C" fn(c_int) -> *const c_char;

/// ncclDataType_t values (nccl.h).
const NCCL_FLOAT32: c_int = 7;
const NCCL_FLOAT64: c_int = 8;
const NCCL_UINT8: c_int = 1;
/// ncclRedOp_t ncclSum.
const NCCL_SUM: c_int = 0;

pub struct Nccl {
    comm: Comm,
    all_reduce: AllReduce,
    broadcast: Broadcast,
    error_string: ErrorString,
    _lib: Library,
}

// SAFETY: the communicator is used from the main thread only.
unsafe impl Send for Nccl {}
unsafe impl Sync for Nccl {}

/// Where NCCL is looked for: by name (the loader's path), then beside libtorch in the
/// torch wheel's environment (`torch/lib` -> `nvidia/nccl/lib`).
fn candidates() -> Vec<std::path::PathBuf> {
    let mut v = vec![std::path::PathBuf::from("libnccl.so.2")];
    if let Some(dir) = option_env!("RLAL_LIBTORCH_LIB") {
        v.push(std::path::Path::new(dir).join("../../nvidia/nccl/lib/libnccl.so.2"));
    }
    v
}

fn func<T: Copy>(lib: &Library, path: &str, name: &str) -> Result<T, DistError> {
    super::symbol(lib, "NCCL", path, name)
}

impl Nccl {
    /// Opens NCCL and creates the world communicator (a collective over `mpi`).
    pub fn init(mpi: &Mpi, rank: usize, size: usize) -> Result<Nccl, DistError> {
        let (lib, path) = super::open_library("RLAL_NCCL_LIB", &candidates()).map_err(|tried| {
            DistError::Nccl(format!(
                "NCCL does not load ({tried}); install the nvidia-nccl-cu13 wheel or set RLAL_NCCL_LIB, or use RLAL_DIST_BACKEND=mpi"
            ))
        })?;
        let get_id: GetUniqueId = func(&lib, &path, "ncclGetUniqueId")?;
        let init_rank: CommInitRank = func(&lib, &path, "ncclCommInitRank")?;
        let n = Nccl {
            comm: std::ptr::null_mut(),
            all_reduce: func(&lib, &path, "ncclAllReduce")?,
            broadcast: func(&lib, &path, "ncclBroadcast")?,
            error_string: func(&lib, &path, "ncclGetErrorString")?,
            _lib: lib,
        };
        let mut id = UniqueId([0; 128]);
        if rank == 0 {
            // SAFETY: `id` is a valid out-pointer.
            n.check("ncclGetUniqueId", unsafe { get_id(&mut id) })?;
        }
        // SAFETY: 128 host bytes.
        unsafe { mpi.bcast(id.0.as_mut_ptr() as *mut c_void, 128, Dtype::Byte, 0)? };
        let mut comm: Comm = std::ptr::null_mut();
        // SAFETY: valid out-pointer; the id is the same on every rank.
        n.check("ncclCommInitRank", unsafe {
            init_rank(&mut comm, size as c_int, id, rank as c_int)
        })?;
        Ok(Nccl { comm, ..n })
    }

    fn check(&self, what: &str, code: c_int) -> Result<(), DistError> {
        if code == 0 {
            return Ok(());
        }
        // SAFETY: ncclGetErrorString returns a static C string.
        let msg = unsafe { CStr::from_ptr((self.error_string)(code)) }.to_string_lossy();
        Err(DistError::Nccl(format!("{what} failed (code {code}): {msg}")))
    }

    fn dtype(d: Dtype) -> c_int {
        match d {
            Dtype::F32 => NCCL_FLOAT32,
            Dtype::F64 => NCCL_FLOAT64,
            Dtype::Byte => NCCL_UINT8,
        }
    }

    /// In-place sum over all ranks of `count` elements at device pointer `ptr`.
    ///
    /// # Safety
    /// `ptr` must point to `count` elements of type `d` on this rank's GPU.
    pub unsafe fn allreduce_sum(
        &self,
        ptr: *mut c_void,
        count: usize,
        d: Dtype,
    ) -> Result<(), DistError> {
        let f = self.all_reduce;
        self.check(
            "ncclAllReduce",
            f(ptr, ptr, count, Self::dtype(d), NCCL_SUM, self.comm, std::ptr::null_mut()),
        )
    }

    /// Broadcast from `root` of `count` elements at device pointer `ptr`.
    ///
    /// # Safety
    /// As [`Nccl::allreduce_sum`].
    pub unsafe fn bcast(
        &self,
        ptr: *mut c_void,
        count: usize,
        d: Dtype,
        root: usize,
    ) -> Result<(), DistError> {
        let f = self.broadcast;
        self.check(
            "ncclBroadcast",
            f(ptr, ptr, count, Self::dtype(d), root as c_int, self.comm, std::ptr::null_mut()),
        )
    }
}
