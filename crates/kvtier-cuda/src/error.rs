//! Errors and library probes.

use thiserror::Error;

/// Errors of the CUDA tier.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CudaError {
    /// `libcuda` could not be loaded (no driver on this machine).
    #[error("no CUDA driver found: {0}")]
    NoDriver(String),
    /// `libnvrtc` could not be loaded.
    #[error("no NVRTC library found: {0}")]
    NoNvrtc(String),
    /// A CUDA driver call failed.
    #[error("CUDA driver error in {call}: {msg}")]
    Driver {
        /// The call.
        call: &'static str,
        /// The driver's error.
        msg: String,
    },
    /// NVRTC failed to compile a kernel.
    #[error("NVRTC failed to compile {kernel}: {msg}")]
    Compile {
        /// Kernel file.
        kernel: String,
        /// Compiler message.
        msg: String,
    },
    /// A memory error (layout, allocation).
    #[error(transparent)]
    Memory(#[from] kvtier_memory::MemoryError),
}

impl CudaError {
    pub(crate) fn driver(call: &'static str) -> impl Fn(cudarc::driver::DriverError) -> CudaError {
        move |e| CudaError::Driver {
            call,
            msg: e.to_string(),
        }
    }
}

impl From<CudaError> for kvtier_memory::CopyError {
    fn from(e: CudaError) -> Self {
        kvtier_memory::CopyError::Cuda(e.to_string())
    }
}

/// Checks that the CUDA driver library can be loaded (without panicking).
pub fn probe_driver() -> Result<(), CudaError> {
    // SAFETY: only tries to dlopen the candidate names.
    if unsafe { cudarc::driver::sys::is_culib_present() } {
        Ok(())
    } else {
        Err(CudaError::NoDriver(format!(
            "libcuda could not be loaded (tried {:?}); install the NVIDIA driver or run CPU-only with mock device memory",
            cudarc::get_lib_name_candidates("cuda")
        )))
    }
}

/// Checks that the NVRTC library can be loaded (without panicking).
pub fn probe_nvrtc() -> Result<(), CudaError> {
    // SAFETY: only tries to dlopen the candidate names.
    if unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        Ok(())
    } else {
        Err(CudaError::NoNvrtc(
            "libnvrtc.so(.12) not on the library search path; run `bash .ci/install-nvrtc.sh` and put the \
             directory it prints on LD_LIBRARY_PATH before starting the process"
                .to_string(),
        ))
    }
}
