//! The control socket: a Unix stream socket in the daemon's runtime directory, readable and
//! writable by its owner only. A client writes one command line (e.g. `status`) and reads one
//! JSON document back; the daemon closes the connection after answering.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// Longest command line accepted; anything longer is not one of ours.
const MAX_COMMAND: u64 = 1024;

/// A bound control socket.
///
/// A background task accepts connections and reads their command lines, so that
/// [`ControlServer::accept`] only receives from a channel: it is cancel-safe in a `select!`
/// (a half-read command is never lost when another branch wins), and a slow client cannot
/// stall the daemon's event loop.
#[derive(Debug)]
pub struct ControlServer {
    requests: tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Request>>,
    acceptor: tokio::task::JoinHandle<()>,
    path: PathBuf,
}

impl ControlServer {
    /// Binds `path` with mode 0600, replacing a stale socket left by a crashed run. Refuses to
    /// replace anything that is not a socket, and refuses when a live daemon answers on it.
    pub async fn bind(path: impl Into<PathBuf>) -> io::Result<ControlServer> {
        let path = path.into();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        match std::fs::symlink_metadata(&path) {
            Ok(meta) => {
                use std::os::unix::fs::FileTypeExt;
                if !meta.file_type().is_socket() {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{} exists and is not a socket", path.display()),
                    ));
                }
                if UnixStream::connect(&path).await.is_ok() {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!("another daemon is answering on {}", path.display()),
                    ));
                }
                std::fs::remove_file(&path)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = UnixListener::bind(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let acceptor = tokio::spawn(accept_loop(listener, tx));
        Ok(ControlServer { requests: tokio::sync::Mutex::new(rx), acceptor, path })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next command from a client. Cancel-safe.
    pub async fn accept(&self) -> io::Result<Request> {
        self.requests
            .lock()
            .await
            .recv()
            .await
            .ok_or_else(|| io::Error::new(io::ErrorKind::BrokenPipe, "control socket acceptor stopped"))
    }
}

/// Accepts connections and reads one command line from each (each connection in its own task,
/// with a time limit), handing complete requests to the daemon.
async fn accept_loop(listener: UnixListener, tx: tokio::sync::mpsc::Sender<Request>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "control socket accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            let read =
                tokio::time::timeout(Duration::from_secs(1), (&mut reader).take(MAX_COMMAND).read_line(&mut line))
                    .await;
            if let Ok(Ok(n)) = read
                && n > 0
            {
                let _ = tx.send(Request { command: line.trim().to_owned(), stream: reader.into_inner() }).await;
            }
        });
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.acceptor.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One command from a client, waiting for its answer.
#[derive(Debug)]
pub struct Request {
    /// The command line, trimmed (e.g. `status`).
    pub command: String,
    stream: UnixStream,
}

impl Request {
    /// Sends the answer and closes the connection. A client that went away is not an error
    /// worth reporting.
    pub async fn respond(mut self, answer: &serde_json::Value) {
        let mut bytes = serde_json::to_vec(answer).unwrap_or_default();
        bytes.push(b'\n');
        let _ = tokio::time::timeout(Duration::from_secs(2), self.stream.write_all(&bytes)).await;
        let _ = self.stream.shutdown().await;
    }
}

/// Sends `command` to the daemon listening on `path` and returns its JSON answer.
pub async fn request(path: &Path, command: &str) -> io::Result<serde_json::Value> {
    let mut stream = UnixStream::connect(path)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("cannot reach the daemon at {}: {e}", path.display())))?;
    stream.write_all(format!("{command}\n").as_bytes()).await?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the daemon did not answer within 5 s"))??;
    serde_json::from_slice(&answer).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_a_status_request_with_owner_only_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/daemon.sock");
        let server = ControlServer::bind(&path).await.unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let serve = tokio::spawn(async move {
            let req = server.accept().await.unwrap();
            assert_eq!(req.command, "status");
            req.respond(&serde_json::json!({"neighbours": 1})).await;
            server
        });
        let answer = request(&path, "status").await.unwrap();
        assert_eq!(answer["neighbours"], 1);
        drop(serve.await.unwrap());
        assert!(!path.exists(), "socket removed on drop");
    }

    #[tokio::test]
    async fn accept_is_cancel_safe() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.sock");
        let server = ControlServer::bind(&path).await.unwrap();
        let client_path = path.clone();
        // A slow client: connects at once, sends its command 100 ms later.
        let client = tokio::spawn(async move {
            let mut stream = UnixStream::connect(&client_path).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            stream.write_all(b"status\n").await.unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await.unwrap();
            answer
        });
        // Another branch wins while the command is still being read: nothing may be lost.
        tokio::select! {
            _ = server.accept() => panic!("no complete request yet"),
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
        let request = server.accept().await.unwrap();
        assert_eq!(request.command, "status");
        request.respond(&serde_json::json!({"ok": true})).await;
        assert_eq!(client.await.unwrap().trim(), r#"{"ok":true}"#);
    }

    #[tokio::test]
    async fn replaces_a_stale_socket_but_not_a_live_one_or_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.sock");
        let live = ControlServer::bind(&path).await.unwrap();
        assert_eq!(ControlServer::bind(&path).await.unwrap_err().kind(), io::ErrorKind::AddrInUse);
        drop(live);
        // Simulate a crash: a socket file stays behind with nobody listening on it.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let rebound = ControlServer::bind(&path).await;
        assert!(rebound.is_ok(), "{rebound:?}");
        let file = dir.path().join("not-a-socket");
        std::fs::write(&file, "x").unwrap();
        assert_eq!(ControlServer::bind(&file).await.unwrap_err().kind(), io::ErrorKind::AlreadyExists);
    }
}
