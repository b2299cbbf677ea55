//! An S3 server on 127.0.0.1 for tests and benches (feature `testing`): the
//! `s3s-fs` implementation of the S3 protocol over a directory, served by
//! hyper in this process. It can be stopped (every connection dropped, as a
//! killed server) and started again on the same port.

use crate::config::RemoteConfig;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use object_store::aws::AmazonS3Builder;
use object_store::ObjectStore;
use parking_lot::Mutex;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Access key the server accepts.
pub const ACCESS_KEY: &str = "kvtier-test";
/// Secret key the server accepts.
pub const SECRET_KEY: &str = "kvtier-test-secret";

/// A directory for a server's files: in memory (under `/dev/shm`) when the
/// machine has it, so that the server's disk does not set the pace.
pub fn scratch_dir() -> std::io::Result<tempfile::TempDir> {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
}

/// A multi-threaded runtime of two workers with I/O and timers, for tests
/// and benches that drive a server from synchronous code.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// A running (or stopped) S3 server.
pub struct S3Server {
    root: PathBuf,
    addr: SocketAddr,
    accept: Option<JoinHandle<()>>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl S3Server {
    /// Serve `root` (each subdirectory a bucket; `buckets` are created) on
    /// 127.0.0.1, on a free port.
    pub async fn start(root: &Path, buckets: &[&str]) -> std::io::Result<S3Server> {
        for b in buckets {
            std::fs::create_dir_all(root.join(b))?;
        }
        let mut s = S3Server {
            root: root.to_path_buf(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            accept: None,
            conns: Arc::new(Mutex::new(Vec::new())),
        };
        s.serve().await?;
        Ok(s)
    }

    async fn serve(&mut self) -> std::io::Result<()> {
        let fs = s3s_fs::FileSystem::new(&self.root)
            .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        let mut b = S3ServiceBuilder::new(fs);
        b.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = b.build();
        let listener = TcpListener::bind(self.addr).await?;
        self.addr = listener.local_addr()?;
        let conns = self.conns.clone();
        self.accept = Some(tokio::spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            while let Ok((socket, _)) = listener.accept().await {
                let conn = http
                    .serve_connection(TokioIo::new(socket), service.clone())
                    .into_owned();
                let t = tokio::spawn(async move {
                    let _ = conn.await;
                });
                let mut c = conns.lock();
                c.retain(|t| !t.is_finished());
                c.push(t);
            }
        }));
        Ok(())
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The directory served (bucket `b` is `root/b`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Stop as a killed server would: the listener closes and every open
    /// connection is dropped.
    pub fn stop(&mut self) {
        if let Some(a) = self.accept.take() {
            a.abort();
        }
        for t in self.conns.lock().drain(..) {
            t.abort();
        }
    }

    /// Start again on the same port.
    pub async fn restart(&mut self) -> std::io::Result<()> {
        self.stop();
        // The aborted listener closes when its task is dropped: retry the
        // bind a bounded number of times.
        for _ in 0..50 {
            match self.serve().await {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await
                }
                Err(e) => return Err(e),
            }
        }
        self.serve().await
    }

    /// A G4 config for `s3://<bucket>/<prefix>` on this server (endpoint and
    /// credentials in its `s3` settings).
    pub fn config(&self, bucket: &str, prefix: &str) -> RemoteConfig {
        let mut c = RemoteConfig::new(format!("s3://{bucket}/{prefix}"));
        for (k, v) in [
            ("endpoint", self.endpoint()),
            ("allow_http", "true".into()),
            ("region", "us-east-1".into()),
            ("access_key_id", ACCESS_KEY.into()),
            ("secret_access_key", SECRET_KEY.into()),
        ] {
            c.s3.insert(k.into(), v);
        }
        c
    }

    /// A raw `object_store` client of `bucket` (for checks and baselines).
    pub fn object_store(&self, bucket: &str) -> Arc<dyn ObjectStore> {
        let s3 = AmazonS3Builder::new()
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_bucket_name(bucket)
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .build();
        // Only fails on missing settings, all given above.
        Arc::new(s3.expect("S3 client settings"))
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
