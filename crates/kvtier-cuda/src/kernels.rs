//! CUDA C kernels embedded from `kernels/` and compiled by NVRTC at run time.

use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions, Ptx};

use crate::error::{probe_nvrtc, CudaError};

/// Every kernel source under `kernels/`: `(file name, source)`.
pub const KERNELS: &[(&str, &str)] = &[("block_copy.cu", BLOCK_COPY_SRC)];

/// Source of the batched block-copy kernel.
pub const BLOCK_COPY_SRC: &str = include_str!("../kernels/block_copy.cu");

/// Entry point of the batched block-copy kernel.
pub const BLOCK_COPY_FN: &str = "kvtier_block_copy";

/// Compiles one kernel source to PTX with NVRTC (probing the library first, so
/// a missing NVRTC is an error, not a panic).
pub fn compile_kernel(name: &str, src: &str) -> Result<Ptx, CudaError> {
    probe_nvrtc()?;
    let opts = CompileOptions {
        name: Some(name.to_string()),
        ..Default::default()
    };
    compile_ptx_with_opts(src, opts).map_err(|e| CudaError::Compile {
        kernel: name.to_string(),
        msg: e.to_string(),
    })
}
