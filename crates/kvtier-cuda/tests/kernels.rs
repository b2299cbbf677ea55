//! Compiles every kernel under `kernels/` to PTX with NVRTC. Skips (with the
//! reason printed) when libnvrtc cannot be loaded. To run it for real:
//!
//! ```sh
//! export LD_LIBRARY_PATH="$(bash .ci/install-nvrtc.sh)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
//! cargo test -p kvtier-cuda --test kernels -- --nocapture
//! ```

use std::path::PathBuf;

use kvtier_cuda::{compile_kernel, probe_nvrtc, KERNELS};

fn kernel_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("kernels")
}

#[test]
fn every_kernel_file_is_embedded() {
    let mut on_disk: Vec<String> = std::fs::read_dir(kernel_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".cu"))
        .collect();
    on_disk.sort();
    let mut embedded: Vec<String> = KERNELS.iter().map(|(n, _)| n.to_string()).collect();
    embedded.sort();
    assert_eq!(on_disk, embedded, "add new kernels to kvtier_cuda::KERNELS");
    for (name, src) in KERNELS {
        let file = std::fs::read_to_string(kernel_dir().join(name)).unwrap();
        assert_eq!(&file, src);
    }
}

#[test]
fn compile_all_kernels_with_nvrtc() {
    if let Err(e) = probe_nvrtc() {
        println!("SKIPPED compile_all_kernels_with_nvrtc: {e}");
        return;
    }
    for entry in std::fs::read_dir(kernel_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("cu") {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let src = std::fs::read_to_string(&path).unwrap();
        let ptx = compile_kernel(&name, &src).unwrap_or_else(|e| panic!("{e}"));
        let text = ptx.to_src();
        assert!(text.contains(".entry"), "{name}: no kernel entry in PTX");
        println!("compiled {name}: {} bytes of PTX", text.len());
    }
}
