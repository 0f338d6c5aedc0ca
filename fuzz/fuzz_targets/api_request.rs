//! The lookup API's request handling, over a real socket: arbitrary bytes sent to a running
//! server (HTTP parsing, routing, the bearer check, id checks, body refusal) never crash it,
//! never get a 500, and never get a 200 without the token. One server serves the whole run; it
//! knows one user, `u0`.
#![no_main]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use churnguard::api::{self, Answer, ApiConfig, ApiMetrics, ApiServer, LocalLookup, Tokens};
use churnguard::engine::{Engine, UserExport, UserView};
use churnguard_fuzz::{drive, engine, script, shipped_model};
use libfuzzer_sys::fuzz_target;

const TOKEN: &str = "fuzz-token-0123456789abcdef";

struct OneEngine(Mutex<Engine>);

impl OneEngine {
    fn answer<T>(&self, get: impl Fn(&Engine) -> Option<T>) -> Answer<T> {
        let engine = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match get(&engine) {
            Some(v) => Answer::Found(v),
            None => Answer::NotHere {
                partitions: vec![0],
            },
        }
    }
}

impl LocalLookup for OneEngine {
    fn describe(&self, user_id: &str) -> Answer<UserView> {
        self.answer(|e| e.describe(user_id))
    }
    fn export(&self, user_id: &str) -> Answer<UserExport> {
        self.answer(|e| e.export(user_id))
    }
    fn partition_count(&self) -> Option<usize> {
        Some(1)
    }
}

fn server() -> SocketAddr {
    static SERVER: OnceLock<ApiServer> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            let dir =
                std::env::temp_dir().join(format!("churnguard-fuzz-api-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("token dir");
            let file = dir.join("tokens");
            std::fs::write(&file, format!("fuzz {TOKEN}\n")).expect("token file");
            let tokens = Tokens::load(&file).expect("tokens");
            let _ = std::fs::remove_dir_all(&dir);
            let mut e = engine(Some(shipped_model()));
            drive(&mut e, &script(&[0, 6, 0, 80, 0, 0, 24, 0]), 30);
            api::serve(
                ApiConfig {
                    addr: "127.0.0.1:0".parse().expect("address"),
                    advertised_url: "http://127.0.0.1".into(),
                    max_concurrent: 64,
                    request_timeout: Duration::from_secs(2),
                    forward_timeout: Duration::from_secs(1),
                    max_id_bytes: 256,
                },
                Arc::new(tokens),
                Arc::new(OneEngine(Mutex::new(e))),
                None,
                ApiMetrics::register(&prometheus::Registry::new()),
            )
            .expect("serve the API")
        })
        .addr
}

/// Closes with a reset rather than a FIN: millions of connections must not leave millions of
/// sockets in TIME_WAIT and run the machine out of local ports.
fn reset_on_close(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket descriptor and a correctly sized `linger` value.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let mut stream = TcpStream::connect(server()).expect("connect to the API");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    // The server may close early (a refused request) while the rest is still being written.
    let _ = stream.write_all(data);
    let _ = stream.shutdown(Shutdown::Write);
    let mut response = Vec::new();
    match stream.read_to_end(&mut response) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("no complete answer within 10 s: {e}"),
    }
    reset_on_close(&stream);
    let text = String::from_utf8_lossy(&response);
    let with_token = data.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes());
    for status in text
        .match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| text.get(i + 9..i + 12))
    {
        assert_ne!(status, "500", "a request made the server fail:\n{text}");
        assert!(
            status != "200" || with_token,
            "200 without the token:\n{text}"
        );
    }
});
