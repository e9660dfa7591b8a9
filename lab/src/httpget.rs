//! `mcast-lab http-get URL`: a tiny HTTP/1.0 GET for scenarios (curl is not installed): prints
//! the body of a 200 answer on stdout and exits 0; anything else is an error (exit 1). Used to
//! scrape the daemons' `/metrics` endpoints.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;

#[derive(Debug, Args)]
pub struct HttpGetArgs {
    /// `http://HOST:PORT/PATH` (HOST an address, `[v6]` for IPv6, or a name).
    pub url: String,
    /// Seconds allowed to connect and for the whole answer.
    #[arg(long, default_value_t = 3.0)]
    pub timeout: f64,
}

/// Splits `http://host:port/path` into the socket address and the path.
fn parse(url: &str) -> Result<(SocketAddr, String, String)> {
    let rest = url.strip_prefix("http://").with_context(|| format!("{url}: only http:// URLs"))?;
    let (authority, path) = rest.split_once('/').map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
    let with_port = if authority.rsplit_once(':').is_some_and(|(h, _)| !h.ends_with(':') && !h.is_empty())
        && (!authority.starts_with('[') || authority.contains("]:"))
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let addr = with_port
        .to_socket_addrs()
        .with_context(|| format!("{url}: bad host or port"))?
        .next()
        .with_context(|| format!("{url}: no address"))?;
    Ok((addr, authority.to_owned(), path))
}

/// Fetches `args.url` and returns the body of a 200 answer.
pub fn get(args: &HttpGetArgs) -> Result<String> {
    let (addr, host, path) = parse(&args.url)?;
    let timeout = Duration::try_from_secs_f64(args.timeout).ok().filter(|t| !t.is_zero()).context("--timeout")?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout).with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n")?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).with_context(|| format!("reading the answer of {addr}"))?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").context("no end of the HTTP header")?;
    let status = head.lines().next().unwrap_or("");
    if status.split_whitespace().nth(1) != Some("200") {
        bail!("{}: {status}", args.url);
    }
    Ok(body.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let (addr, host, path) = parse("http://127.0.0.1:9101/metrics").unwrap();
        assert_eq!(
            (addr.to_string(), host.as_str(), path.as_str()),
            ("127.0.0.1:9101".into(), "127.0.0.1:9101", "/metrics")
        );
        let (addr, _, path) = parse("http://[::1]:9101/metrics").unwrap();
        assert_eq!((addr.to_string(), path.as_str()), ("[::1]:9101".into(), "/metrics"));
        let (addr, _, path) = parse("http://127.0.0.1").unwrap();
        assert_eq!((addr.to_string(), path.as_str()), ("127.0.0.1:80".into(), "/"));
        assert!(parse("https://127.0.0.1/").is_err());
    }

    #[test]
    fn fetches_a_body_and_refuses_other_statuses() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            for answer in ["HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n", "HTTP/1.1 404 Not Found\r\n\r\nno"] {
                let (mut s, _) = listener.accept().unwrap();
                let mut request = Vec::new();
                let mut buf = [0u8; 512];
                while !request.ends_with(b"\r\n\r\n") {
                    let n = s.read(&mut buf).unwrap();
                    assert!(n > 0, "request cut short");
                    request.extend_from_slice(&buf[..n]);
                }
                s.write_all(answer.as_bytes()).unwrap();
                s.shutdown(std::net::Shutdown::Write).unwrap();
            }
        });
        let args = HttpGetArgs { url: format!("http://{addr}/metrics"), timeout: 2.0 };
        assert_eq!(get(&args).unwrap(), "ok\n");
        assert!(get(&args).unwrap_err().to_string().contains("404"));
        server.join().unwrap();
    }
}
