//! Criterion benches: mock <-> host and host <-> disk, 64 blocks of 128 KiB.
#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kvtier_disk::{DiskCopyEngine, DiskIo, DiskMemory, OpenMode};
use kvtier_memory::{
    BlockMemory, BlockShape, CopyEngine, HostMemory, Layout, MemcpyEngine, Memory, MockDeviceMemory,
};

fn bench(c: &mut Criterion) {
    let batch = 64;
    let layout = Layout::contiguous(BlockShape::llama3_8b().with_block_size(1), batch).unwrap();
    let pairs: Vec<_> = (0..batch).map(|i| (i, batch - 1 - i)).collect();
    let host: Arc<dyn BlockMemory> = Arc::new(HostMemory::new(layout).unwrap());
    let mock: Arc<dyn BlockMemory> = Arc::new(MockDeviceMemory::new(layout).unwrap());
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let memcpy = MemcpyEngine::new(threads).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let disk: Arc<dyn BlockMemory> =
        Arc::new(DiskMemory::open(dir.path().join("g3"), layout, OpenMode::CreateNew).unwrap());
    let pio = DiskCopyEngine::new(DiskIo::Direct, threads).unwrap();

    let mut g = c.benchmark_group("migration_64x128KiB");
    g.throughput(Throughput::Bytes(layout.total_bytes() as u64));
    g.measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(300));
    g.sample_size(20);
    let runs: [(&str, &dyn CopyEngine, &Memory, &Memory); 4] = [
        ("mock->host", &memcpy, &mock, &host),
        ("host->mock", &memcpy, &host, &mock),
        ("host->disk pio", &pio, &host, &disk),
        ("disk->host pio", &pio, &disk, &host),
    ];
    for (name, engine, src, dst) in runs {
        g.bench_function(name, |b| {
            b.iter(|| {
                engine
                    .copy_blocks(src, dst, &pairs)
                    .unwrap()
                    .wait()
                    .unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
