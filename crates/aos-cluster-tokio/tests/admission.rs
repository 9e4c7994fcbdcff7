//! The admission policy (SPEC "Drivers: admission policy") attacked from
//! outside: one address cannot pass `max_sessions_per_ip`, a flood of bad
//! or oversized credentials leaves real clients their sessions and never
//! counts, a hook that hangs is cut at its deadline, and a request without a
//! credential passes where no hook is set.

mod common;

use std::any::Any;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use aos_cluster::wire::{Credential, Limits, Message, RejectReason, SessionOutcome, SessionRequest};
use aos_cluster::ClientConfig;
use aos_cluster_tokio::frames::FrameReader;
use aos_cluster_tokio::server::{AdmissionPolicy, AdmissionRequest, Server, ServerOptions, Verdict};
use aos_cluster_tokio::{AppStream, ClientOptions, ServerConfig, ServerHandle};
use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpSocket;
use tokio::task::JoinHandle;
use tokio::time::Instant;

// ---- helpers -------------------------------------------------------------------------

/// Every log line of this test binary (one global subscriber).
fn logs() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<&'static Mutex<Vec<u8>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs: &'static Mutex<Vec<u8>> = Box::leak(Box::new(Mutex::new(Vec::new())));
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .with_writer(move || LogWriter(logs))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
        logs
    })
}

struct LogWriter(&'static Mutex<Vec<u8>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logged_lines(needle: &str) -> Vec<String> {
    let logs = logs().lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    String::from_utf8_lossy(&logs).lines().filter(|line| line.contains(needle)).map(str::to_owned).collect()
}

/// A server whose application keeps every session it is given, until the
/// test drops them.
struct Held {
    handle: ServerHandle,
    addr: SocketAddr,
    config: ClientConfig,
    sessions: Arc<Mutex<Vec<AppStream>>>,
    _app: JoinHandle<()>,
}

impl Held {
    async fn start(config: ServerConfig, options: ServerOptions) -> Held {
        let registry = MemRegistry::new();
        let dyn_registry: Arc<dyn aos_cluster_tokio::registry::Registry> = registry.clone();
        let mut server = Server::bind_with(config, dyn_registry, options).await.expect("server starts");
        let (handle, addr) = (server.handle(), server.local_addr());
        let client = ClientConfig {
            cluster: Some(CLUSTER.to_owned()),
            handshake_timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(3),
            ..ClientConfig::with_seeds(vec![server.endpoint().clone()])
        };
        let sessions = Arc::new(Mutex::new(Vec::new()));
        let kept = sessions.clone();
        let app = tokio::spawn(async move {
            while let Some(accepted) = server.accept().await {
                kept.lock().unwrap().push(accepted.stream);
            }
        });
        Held { handle, addr, config: client, sessions, _app: app }
    }

    fn held(&self) -> usize {
        self.sessions.lock().unwrap().len()
    }

    /// The application ends one session (its connection closes).
    fn end_one(&self) {
        drop(self.sessions.lock().unwrap().pop());
    }
}

fn cap_config(max_sessions: u32, per_ip: Option<usize>) -> ServerConfig {
    ServerConfig { max_sessions_per_ip: per_ip, ..server_config(1, max_sessions) }
}

/// A raw client whose connection comes from `source` (any 127.x.y.z is
/// loopback on Linux: a second client address without a second machine).
async fn raw_from(source: IpAddr, addr: SocketAddr) -> RawClient {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(source, 0)).expect("bind the source address");
    let stream = socket.connect(addr).await.expect("connect");
    RawClient { stream, reader: FrameReader::new(Limits::default(), PATIENCE) }
}

fn request(request_id: u64, credential: Option<&[u8]>) -> Message {
    let credential = credential.map(|c| Credential::new(c).expect("within 4 KiB"));
    Message::SessionRequest(SessionRequest { request_id, credential })
}

async fn outcome(client: &mut RawClient, message: &Message) -> SessionOutcome {
    client.send(message).await;
    match client.recv().await {
        Message::SessionReply(reply) => reply.outcome,
        other => panic!("not a session reply: {other:?}"),
    }
}

/// The admission hook of these tests: admits the credential `good` only,
/// and remembers who asked.
fn good_only(seen: Arc<Mutex<Vec<AdmissionRequest>>>) -> AdmissionPolicy {
    AdmissionPolicy::new(move |request: AdmissionRequest| {
        let admit = request.credential.as_ref().is_some_and(|c| c.as_bytes() == b"good");
        seen.lock().unwrap().push(request);
        async move {
            match admit {
                true => Verdict::Admit,
                false => Verdict::Unauthorized,
            }
        }
    })
}

fn localhost() -> IpAddr {
    IpAddr::from([127, 0, 0, 1])
}

// ---- one address, one cap ------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_pass_its_cap_however_many_parallel_requests_it_sends() {
    const CAP: usize = 3;
    const PARALLEL: usize = 40;
    let server = Held::start(cap_config(100, Some(CAP)), ServerOptions::new()).await;
    let addr = server.addr;
    let tasks: Vec<_> = (0..PARALLEL as u64)
        .map(|i| {
            tokio::spawn(async move {
                let mut client = RawClient::connect(addr).await;
                let got = outcome(&mut client, &request(i, None)).await;
                (client, got)
            })
        })
        .collect();
    let mut admitted = Vec::new();
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            (client, SessionOutcome::Accepted { .. }) => admitted.push(client),
            (_, SessionOutcome::Rejected(RejectReason::AddressLimit)) => refused += 1,
            (_, other) => panic!("neither admitted nor AddressLimit: {other:?}"),
        }
    }
    assert_eq!(admitted.len(), CAP, "exactly the cap is admitted");
    assert_eq!(refused, PARALLEL - CAP);
    eventually("the application holds the admitted sessions", || async { server.held() == CAP }).await;
    let s = stats(&server.handle).await;
    assert_eq!(s.workload.connected, CAP as u32, "refused requests never counted");
    assert_eq!(s.instance.admission.sessions_accepted, CAP as u64);
    assert_eq!(s.sessions.refused_per_address, (PARALLEL - CAP) as u64);
    assert_eq!(s.instance.admission.rejected_by_policy, (PARALLEL - CAP) as u64);

    // Another address has places of its own.
    let mut other = raw_from(IpAddr::from([127, 0, 0, 2]), addr).await;
    assert!(matches!(outcome(&mut other, &request(100, None)).await, SessionOutcome::Accepted { .. }));

    // A refused connection may ask again on the same connection: still refused.
    let mut again = RawClient::connect(addr).await;
    assert_eq!(
        outcome(&mut again, &request(101, None)).await,
        SessionOutcome::Rejected(RejectReason::AddressLimit)
    );
    // When the application ends one of the address's sessions, its place comes back.
    server.end_one();
    server.end_one();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut client = RawClient::connect(addr).await;
        match outcome(&mut client, &request(102, None)).await {
            SessionOutcome::Accepted { .. } => break,
            SessionOutcome::Rejected(RejectReason::AddressLimit) => {}
            other => panic!("{other:?}"),
        }
        assert!(Instant::now() < deadline, "an ended session never gave its address place back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(admitted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_takes_no_address_place_even_for_a_moment() {
    // Cap 1 on the address and a hook that refuses a first credential: the
    // hook's refusal and the machine's `Full` both leave the place free.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let options = ServerOptions::new().with_admission(good_only(seen.clone()));
    let server = Held::start(cap_config(1, Some(2)), options).await;
    let mut first = RawClient::connect(server.addr).await;
    assert_eq!(
        outcome(&mut first, &request(1, Some(b"bad"))).await,
        SessionOutcome::Rejected(RejectReason::Unauthorized)
    );
    assert!(matches!(outcome(&mut first, &request(2, Some(b"good"))).await, SessionOutcome::Accepted { .. }));
    // The instance is full now: the machine rejects, and the address place
    // taken for the request goes back.
    for id in 3..6 {
        let mut full = RawClient::connect(server.addr).await;
        assert_eq!(
            outcome(&mut full, &request(id, Some(b"good"))).await,
            SessionOutcome::Rejected(RejectReason::Full)
        );
    }
    server.handle.set_max_sessions(5).await.unwrap();
    // One place of two is held: exactly one more session from this address.
    let mut second = RawClient::connect(server.addr).await;
    assert!(matches!(
        outcome(&mut second, &request(6, Some(b"good"))).await,
        SessionOutcome::Accepted { .. }
    ));
    let mut third = RawClient::connect(server.addr).await;
    assert_eq!(
        outcome(&mut third, &request(7, Some(b"good"))).await,
        SessionOutcome::Rejected(RejectReason::AddressLimit)
    );
    let s = stats(&server.handle).await;
    assert_eq!((s.workload.connected, s.sessions.refused_by_hook, s.sessions.refused_per_address), (2, 1, 1));
    // The hook saw the peer's address and the credential; no TLS, no certificate.
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].peer_addr.ip(), localhost());
    assert_eq!(seen[0].credential.as_ref().map(Credential::as_bytes), Some(&b"bad"[..]));
    assert!(seen.iter().all(|r| r.client_certificate.is_none()));
}

// ---- floods ----------------------------------------------------------------------------

/// Raw frames a hostile client may send: a credential announced at 65 535
/// bytes with three sent, one of 4 097 bytes, one of 60 000 bytes.
fn oversized_frames() -> Vec<Vec<u8>> {
    let frame = |payload: Vec<u8>| {
        let mut out = vec![1u8, 3];
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&payload);
        out
    };
    let with = |announced: u16, body: Vec<u8>| {
        let mut payload = 9u64.to_be_bytes().to_vec();
        payload.extend_from_slice(&announced.to_be_bytes());
        payload.extend_from_slice(&body);
        frame(payload)
    };
    vec![with(u16::MAX, b"abc".to_vec()), with(4097, vec![7; 4097]), with(60_000, vec![7; 60_000])]
}

/// `count` hostile connections at once: most send two bad credentials each
/// (the first reply must be `Unauthorized`), every fifth an oversized
/// credential frame (the server must close it). Returns the refusals seen.
fn flood(addr: SocketAddr, count: usize) -> Vec<JoinHandle<usize>> {
    (0..count)
        .map(|i| {
            tokio::spawn(async move {
                let mut client = RawClient::connect(addr).await;
                if i % 5 == 4 {
                    let frames = oversized_frames();
                    client.stream.write_all(&frames[i / 5 % frames.len()]).await.ok();
                    assert!(
                        closed_within(&mut client.stream, PATIENCE).await,
                        "an oversized credential must close the connection"
                    );
                    return 0;
                }
                let mut refused = 0;
                for round in 0..2u64 {
                    let bad = format!("bad-{i}-{round}");
                    let got = outcome(&mut client, &request(round, Some(bad.as_bytes()))).await;
                    assert_eq!(got, SessionOutcome::Rejected(RejectReason::Unauthorized));
                    refused += 1;
                }
                refused
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bad_credentials_never_counts_and_leaves_real_clients_their_sessions() {
    const REAL: u32 = 10;
    const FLOOD: usize = 150;
    let options = ServerOptions::new().with_admission(good_only(Arc::default()));
    let server = Held::start(cap_config(REAL, None), options).await;
    let addr = server.addr;

    // Phase 1: the flood alone. A peer's workload queries, asked all
    // through it, and the registry row never see a session.
    let first = flood(addr, FLOOD);
    let mut peer = RawClient::connect(addr).await;
    let mut reports = 0;
    while !first.iter().all(JoinHandle::is_finished) {
        let report = peer.workload(reports).await;
        assert_eq!(report.workload.connected, 0, "a refused session showed in a workload report");
        reports += 1;
    }
    let mut refused = 0;
    for task in first {
        refused += task.await.expect("every flood connection got its refusal");
    }
    assert!(reports > 0);
    let s = stats(&server.handle).await;
    assert_eq!(s.workload.connected, 0);
    assert_eq!(s.instance.admission.sessions_accepted, 0);
    assert_eq!(s.sessions.refused_by_hook, refused as u64);
    assert_eq!(s.instance.admission.rejected_by_policy, refused as u64);
    assert_eq!(
        s.connections.malformed_frames,
        (FLOOD / 5) as u64,
        "each oversized credential closed its connection"
    );

    // Phase 2: a second flood while the real clients connect, async and
    // blocking, with the good credential: every one of them gets a session,
    // and the instance's ten places are theirs alone.
    let second = flood(addr, FLOOD);
    let options = ClientOptions::new().with_credential(Credential::new(*b"good").unwrap());
    let mut real = Vec::new();
    for i in 0..REAL {
        let (config, options) = (server.config.clone(), options.clone());
        // Each session is kept (as `Any`) until the end of the test.
        real.push(tokio::spawn(async move {
            if i % 2 == 0 {
                let session =
                    aos_cluster_tokio::Client::with_options(config.clone(), options.clone()).connect().await;
                session.map(|s| Box::new(s) as Box<dyn Any + Send>).map_err(|e| e.to_string())
            } else {
                tokio::task::spawn_blocking(move || {
                    aos_cluster_tokio::blocking::Client::with_options(config.clone(), options.clone())
                        .connect()
                        .map(|s| Box::new(s) as Box<dyn Any + Send>)
                        .map_err(|e| e.to_string())
                })
                .await
                .unwrap()
            }
        }));
    }
    let mut sessions = Vec::new();
    for task in real {
        sessions.push(task.await.unwrap().expect("a real client with the good credential gets a session"));
    }
    for task in second {
        task.await.expect("every flood connection got its refusal");
    }
    eventually("the application holds every real session", || async { server.held() == REAL as usize }).await;
    let s = stats(&server.handle).await;
    assert_eq!(s.workload.connected, REAL);
    assert_eq!(s.instance.admission.sessions_accepted, u64::from(REAL), "no flood request was ever admitted");
    drop(sessions);
}

// ---- a hook that hangs -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_that_hangs_is_cut_at_its_deadline_and_said_so() {
    logs();
    const DEADLINE: Duration = Duration::from_millis(250);
    let calls = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicBool::new(false));
    struct SetOnDrop(Arc<AtomicBool>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let (c, d) = (calls.clone(), dropped.clone());
    let hook = move |request: AdmissionRequest| {
        c.fetch_add(1, Ordering::SeqCst);
        let guard = SetOnDrop(d.clone());
        async move {
            if request.credential.is_some_and(|c| c.as_bytes() == b"panic") {
                panic!("a broken hook");
            }
            let _guard = guard;
            std::future::pending::<Verdict>().await
        }
    };
    let options = ServerOptions::new().with_admission(AdmissionPolicy::new(hook).with_deadline(DEADLINE));
    let server = Held::start(cap_config(5, Some(5)), options).await;
    let mut client = RawClient::connect(server.addr).await;
    let began = Instant::now();
    let got = outcome(&mut client, &request(1, Some(b"any"))).await;
    let waited = began.elapsed();
    assert_eq!(got, SessionOutcome::Rejected(RejectReason::Unauthorized));
    assert!(waited >= DEADLINE, "refused after {waited:?}, before the deadline");
    assert!(waited < DEADLINE + Duration::from_secs(2), "refused only after {waited:?}");
    eventually("the hung hook's future is dropped", || async { dropped.load(Ordering::SeqCst) }).await;
    // A hook that panics refuses too, and the server goes on serving.
    let got = outcome(&mut client, &request(2, Some(b"panic"))).await;
    assert_eq!(got, SessionOutcome::Rejected(RejectReason::Unauthorized));
    let s = stats(&server.handle).await;
    assert_eq!(
        (s.sessions.admission_hook_timeouts, s.sessions.refused_by_hook, s.workload.connected),
        (2, 2, 0)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let lines = logged_lines("admission hook did not answer within 250ms; session refused (Unauthorized)");
    assert_eq!(lines.len(), 1, "one clear warning: {lines:?}");
    assert!(lines[0].contains("127.0.0.1"), "the warning names the peer: {}", lines[0]);
}

// ---- old clients ---------------------------------------------------------------------------

/// The request a client without credentials writes, byte for byte.
const OLD_STYLE_REQUEST: [u8; 14] = [1, 3, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 42];

async fn old_style(addr: SocketAddr) -> (RawClient, SessionOutcome) {
    let mut client = RawClient::connect(addr).await;
    client.stream.write_all(&OLD_STYLE_REQUEST).await.unwrap();
    let Message::SessionReply(reply) = client.recv().await else { panic!("not a session reply") };
    assert_eq!(reply.request_id, 42);
    (client, reply.outcome)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_credential_passes_without_a_hook_and_not_past_one_that_wants_one() {
    assert_eq!(frame(&request(42, None)), OLD_STYLE_REQUEST, "no credential: the old bytes");
    let open = Held::start(server_config(1, 5), ServerOptions::new()).await;
    let (_kept, got) = old_style(open.addr).await;
    assert!(matches!(got, SessionOutcome::Accepted { .. }), "{got:?}");

    let seen = Arc::new(Mutex::new(Vec::new()));
    let guarded =
        Held::start(server_config(2, 5), ServerOptions::new().with_admission(good_only(seen.clone()))).await;
    let (mut client, got) = old_style(guarded.addr).await;
    assert_eq!(got, SessionOutcome::Rejected(RejectReason::Unauthorized));
    assert!(seen.lock().unwrap()[0].credential.is_none(), "the hook was asked, with no credential");
    // The refusal leaves the connection usable: the same client with a credential gets in.
    assert!(matches!(
        outcome(&mut client, &request(43, Some(b"good"))).await,
        SessionOutcome::Accepted { .. }
    ));
    let s = stats(&guarded.handle).await;
    assert_eq!(
        (s.workload.connected, s.instance.admission.sessions_accepted, s.sessions.refused_by_hook),
        (1, 1, 1)
    );
}

#[tokio::test]
async fn a_zero_hook_deadline_is_a_configuration_error() {
    let registry: Arc<dyn aos_cluster_tokio::registry::Registry> = MemRegistry::new();
    let policy =
        AdmissionPolicy::new(|_: AdmissionRequest| async { Verdict::Admit }).with_deadline(Duration::ZERO);
    let error = Server::bind_with(server_config(1, 5), registry, ServerOptions::new().with_admission(policy))
        .await
        .err()
        .expect("refused");
    assert!(error.to_string().contains("deadline"), "{error}");
}

// ---- the TLS client identity ------------------------------------------------------------

#[cfg(feature = "dev-certs")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hook_sees_the_client_certificate_where_one_is_used() {
    use aos_cluster_tokio::tls::dev_certs::DevPki;
    use aos_cluster_tokio::tls::ClientTls;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    let pki = DevPki::new().unwrap();
    let client_files = pki.issue("client-app", &["client-app"]).unwrap();
    let client_der = CertificateDer::from_pem_file(&client_files.cert).unwrap();
    // Admits only the holder of that certificate.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (wanted, record) = (client_der.as_ref().to_vec(), seen.clone());
    let hook = move |request: AdmissionRequest| {
        let admit = request.client_certificate.as_deref() == Some(&wanted[..]);
        record.lock().unwrap().push(request);
        async move {
            match admit {
                true => Verdict::Admit,
                false => Verdict::Unauthorized,
            }
        }
    };
    let options = ServerOptions::new()
        .with_tls(pki.server_tls(&["127.0.0.1"]).unwrap())
        .with_admission(AdmissionPolicy::new(hook));
    let mut config = cap_config(5, None);
    config.instance.role = aos_cluster::Role::Standalone;
    config.instance.cluster = None;
    let server = Held::start(config, options).await;
    let client_config = ClientConfig { cluster: None, ..server.config.clone() };

    let anonymous = ClientOptions::new().with_tls(pki.client_tls().unwrap());
    let error = aos_cluster_tokio::Client::with_options(client_config.clone(), anonymous.clone())
        .connect()
        .await
        .expect_err("no certificate");
    assert!(error.to_string().contains("Unauthorized"), "{error}");
    let holder =
        ClientTls::with_identity(pki.trust_roots().unwrap(), client_files.identity().unwrap()).unwrap();
    let options =
        ClientOptions::new().with_tls(holder).with_credential(Credential::new(*b"and a token").unwrap());
    let _session = aos_cluster_tokio::Client::with_options(client_config.clone(), options.clone())
        .connect()
        .await
        .expect("the holder gets in");

    {
        let seen = seen.lock().unwrap();
        assert!(seen.iter().any(|r| r.client_certificate.is_none()), "the anonymous client was asked about");
        let last = seen.last().unwrap();
        assert_eq!(last.client_certificate.as_deref(), Some(client_der.as_ref()));
        assert_eq!(last.credential.as_ref().map(Credential::as_bytes), Some(&b"and a token"[..]));
    }
    assert_eq!(stats(&server.handle).await.workload.connected, 1);
}

// ---- the aos-instance file -----------------------------------------------------------------

#[cfg(feature = "admin")]
#[test]
fn max_sessions_per_ip_is_an_instance_file_setting_off_by_default() {
    use aos_cluster_tokio::config_file::InstanceFile;
    use std::path::Path;
    let file = |extra: &str| {
        format!(
            "registry = \"sqlite::memory:\"\nlisten = \"127.0.0.1:0\"\n{extra}\n[instance]\nid = 1\n\
             endpoint = \"127.0.0.1:2712\"\ncluster = \"c\"\nmax_sessions = 10\n"
        )
    };
    let plain = InstanceFile::parse(Path::new("i.toml"), &file("")).unwrap();
    assert_eq!(plain.server.max_sessions_per_ip, None);
    assert!(!plain.to_toml().contains("max_sessions_per_ip"), "off is written as absent");
    let capped = InstanceFile::parse(Path::new("i.toml"), &file("max_sessions_per_ip = 20")).unwrap();
    assert_eq!(capped.server.max_sessions_per_ip, Some(20));
    assert!(capped.to_toml().contains("max_sessions_per_ip = 20"), "{}", capped.to_toml());
    let zero = InstanceFile::parse(Path::new("i.toml"), &file("max_sessions_per_ip = 0")).unwrap_err();
    assert_eq!(
        zero.to_string(),
        "i.toml:3: `max_sessions_per_ip` must not be zero (leave it out to switch it off)"
    );
}
