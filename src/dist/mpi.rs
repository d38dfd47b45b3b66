//! Open MPI, loaded at run time (`libmpi.so.40`, or `RLAL_MPI_LIB`): launch,
//! rendezvous and CPU collectives. Only the handful of MPI-1/2 calls rlal uses
//! are bound. Open MPI's handles (communicators, datatypes, operations, error
//! handlers) are the addresses of its exported `ompi_mpi_*` objects and
//! `MPI_IN_PLACE` is `(void*)1` (its `mpi.h`); a library without those symbols
//! (MPICH, Intel MPI) is refused with a clear error rather than misused.
use super::DistError;
use libloading::os::unix::{Library, Symbol};
use std::ffi::{c_char, c_int, c_void};

type Handle = *mut c_void;
type InitThread = unsafe extern "C" fn(*mut c_int, *mut c_void, c_int, *mut c_int) -> c_int;
type CommInt = unsafe extern "C" fn(Handle, *mut c_int) -> c_int;
type SetErrh = unsafe extern "C" fn(Handle, Handle) -> c_int;
type Allreduce =
    unsafe extern "C" fn(*const c_void, *mut c_void, c_int, Handle, Handle, Handle) -> c_int;
type Bcast = unsafe extern "C" fn(*mut c_void, c_int, Handle, c_int, Handle) -> c_int;
type Barrier = unsafe extern "C" fn(Handle) -> c_int;
type Finalize = unsafe extern "C" fn() -> c_int;
type Abort = unsafe extern "C" fn(Handle, c_int) -> c_int;
type ErrString = unsafe extern "C" fn(c_int, *mut c_char, *mut c_int) -> c_int;

/// MPI_THREAD_FUNNELED: only the main thread makes MPI calls (rlal's collectives).
const THREAD_FUNNELED: c_int = 1;
/// Open MPI's MPI_IN_PLACE.
const IN_PLACE: *const c_void = std::ptr::without_provenance(1);

/// The element types rlal reduces.
#[derive(Clone, Copy, Debug)]
pub enum Dtype {
    F32,
    F64,
    Byte,
}

pub struct Mpi {
    path: String,
    comm_world: Handle,
    f32: Handle,
    f64: Handle,
    byte: Handle,
    sum: Handle,
    allreduce: Allreduce,
    bcast: Bcast,
    barrier: Barrier,
    finalize: Finalize,
    abort: Abort,
    err_string: ErrString,
    _lib: Library,
}

// SAFETY: the handles are addresses of Open MPI's static objects; calls are made from
// the main thread only (MPI_THREAD_FUNNELED), the struct is shared for the watchdog's abort.
unsafe impl Send for Mpi {}
unsafe impl Sync for Mpi {}

/// The address of exported object `name` (an Open MPI handle).
fn object(lib: &Library, path: &str, name: &str) -> Result<Handle, DistError> {
    // SAFETY: the symbol is a data object; only its address is taken.
    let s: Result<Symbol<*mut c_void>, _> = unsafe { lib.get(name.as_bytes()) };
    match s {
        Ok(s) => Ok(*s),
        Err(_) => Err(DistError::Mpi(format!(
            "{path} has no '{name}': rlal's MPI support is for Open MPI (libmpi.so.40); set RLAL_MPI_LIB to Open MPI's libmpi"
        ))),
    }
}

fn func<T: Copy>(lib: &Library, path: &str, name: &str) -> Result<T, DistError> {
    super::symbol(lib, "MPI", path, name)
}

impl Mpi {
    /// Loads Open MPI and initialises it (once per process); returns it with (rank, size).
    pub fn init() -> Result<(Mpi, usize, usize), DistError> {
        let defaults = ["libmpi.so.40".into(), "libmpi.so".into()];
        match super::open_library("RLAL_MPI_LIB", &defaults) {
            Ok((lib, path)) => Self::start(lib, path),
            Err(tried) => Err(DistError::Mpi(format!(
                "the MPI launcher started this process but no MPI library loads ({tried}); install Open MPI (Debian: openmpi-bin libopenmpi3) or set RLAL_MPI_LIB"
            ))),
        }
    }

    fn start(lib: Library, path: String) -> Result<(Mpi, usize, usize), DistError> {
        let l = &lib;
        let init: InitThread = func(l, &path, "MPI_Init_thread")?;
        let rank_f: CommInt = func(l, &path, "MPI_Comm_rank")?;
        let size_f: CommInt = func(l, &path, "MPI_Comm_size")?;
        let set_errh: SetErrh = func(l, &path, "MPI_Comm_set_errhandler")?;
        let m = Mpi {
            comm_world: object(l, &path, "ompi_mpi_comm_world")?,
            f32: object(l, &path, "ompi_mpi_float")?,
            f64: object(l, &path, "ompi_mpi_double")?,
            byte: object(l, &path, "ompi_mpi_byte")?,
            sum: object(l, &path, "ompi_mpi_op_sum")?,
            allreduce: func(l, &path, "MPI_Allreduce")?,
            bcast: func(l, &path, "MPI_Bcast")?,
            barrier: func(l, &path, "MPI_Barrier")?,
            finalize: func(l, &path, "MPI_Finalize")?,
            abort: func(l, &path, "MPI_Abort")?,
            err_string: func(l, &path, "MPI_Error_string")?,
            path,
            _lib: lib,
        };
        let errors_return = object(&m._lib, &m.path, "ompi_mpi_errors_return")?;
        let (mut provided, mut rank, mut size) = (0, 0, 0);
        // SAFETY: MPI-2 allows null argc/argv; the out-pointers are valid locals.
        unsafe {
            m.check(
                "MPI_Init_thread",
                init(std::ptr::null_mut(), std::ptr::null_mut(), THREAD_FUNNELED, &mut provided),
            )?;
            // Errors return codes (named by rlal) instead of aborting inside MPI.
            m.check("MPI_Comm_set_errhandler", set_errh(m.comm_world, errors_return))?;
            m.check("MPI_Comm_rank", rank_f(m.comm_world, &mut rank))?;
            m.check("MPI_Comm_size", size_f(m.comm_world, &mut size))?;
        }
        if provided < THREAD_FUNNELED {
            return Err(DistError::Mpi(format!(
                "{}: MPI_THREAD_FUNNELED not provided (level {provided})",
                m.path
            )));
        }
        Ok((m, rank as usize, size as usize))
    }

    fn check(&self, what: &str, code: c_int) -> Result<(), DistError> {
        if code == 0 {
            return Ok(());
        }
        let mut buf = vec![0 as c_char; 512];
        let mut len: c_int = 0;
        // SAFETY: MPI_MAX_ERROR_STRING is 256 in Open MPI; the buffer is larger.
        unsafe { (self.err_string)(code, buf.as_mut_ptr(), &mut len) };
        let msg: String =
            buf[..len.clamp(0, 511) as usize].iter().map(|&c| c as u8 as char).collect();
        Err(DistError::Mpi(format!("{what} failed (code {code}): {msg}")))
    }

    fn dtype(&self, d: Dtype) -> Handle {
        match d {
            Dtype::F32 => self.f32,
            Dtype::F64 => self.f64,
            Dtype::Byte => self.byte,
        }
    }

    /// In-place sum over all ranks of `count` elements at `ptr`.
    ///
    /// # Safety
    /// `ptr` must point to `count` valid elements of type `d`, on the host.
    pub unsafe fn allreduce_sum(
        &self,
        ptr: *mut c_void,
        count: usize,
        d: Dtype,
    ) -> Result<(), DistError> {
        for (off, n) in chunks(count) {
            let p = (ptr as *mut u8).add(off * elem_size(d)) as *mut c_void;
            self.check(
                "MPI_Allreduce",
                (self.allreduce)(IN_PLACE, p, n, self.dtype(d), self.sum, self.comm_world),
            )?;
        }
        Ok(())
    }

    /// Broadcast of `count` elements at `ptr` from `root`.
    ///
    /// # Safety
    /// As [`Mpi::allreduce_sum`].
    pub unsafe fn bcast(
        &self,
        ptr: *mut c_void,
        count: usize,
        d: Dtype,
        root: usize,
    ) -> Result<(), DistError> {
        for (off, n) in chunks(count) {
            let p = (ptr as *mut u8).add(off * elem_size(d)) as *mut c_void;
            self.check(
                "MPI_Bcast",
                (self.bcast)(p, n, self.dtype(d), root as c_int, self.comm_world),
            )?;
        }
        Ok(())
    }

    pub fn barrier(&self) -> Result<(), DistError> {
        // SAFETY: a collective on the world communicator.
        unsafe { self.check("MPI_Barrier", (self.barrier)(self.comm_world)) }
    }

    pub fn finalize(&self) {
        // SAFETY: called once, at the end of the process's MPI use.
        unsafe { (self.finalize)() };
    }

    /// Terminates every rank of the job (MPI_Abort on the world communicator).
    pub fn abort(&self, code: i32) {
        // SAFETY: MPI_Abort may be called at any time after initialisation.
        unsafe { (self.abort)(self.comm_world, code) };
    }
}

fn elem_size(d: Dtype) -> usize {
    match d {
        Dtype::F32 => 4,
        Dtype::F64 => 8,
        Dtype::Byte => 1,
    }
}

/// (offset, count) pieces of at most 2^30 elements (MPI counts are C ints).
fn chunks(count: usize) -> impl Iterator<Item = (usize, c_int)> {
    const MAX: usize = 1 << 30;
    (0..count.div_ceil(MAX)).map(move |i| (i * MAX, (count - i * MAX).min(MAX) as c_int))
}

#[cfg(test)]
mod tests {
    #[test]
    fn large_counts_are_split_into_c_int_pieces() {
        let c: Vec<_> = super::chunks((1 << 31) + 5).collect();
        assert_eq!(c, vec![(0, 1 << 30), (1 << 30, 1 << 30), (1 << 31, 5)]);
        assert_eq!(super::chunks(0).count(), 0);
    }
}
