//! TLS end to end with the real `weft` binary: a test CA and a server
//! certificate for 127.0.0.1/localhost are made at test time (rcgen; no key
//! is committed), the hub serves HTTPS and WSS with them, and clients trust
//! the CA only when given `--ca`. Also: a plain client to the TLS port, bad
//! PEM files, and the loopback rule for plain hubs and clients.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use weft_client::hub_api;
use weft_client::link::HubAddr;
use weft_client::tls::{ClientTls, TlsOptions};
use weft_protocol::rest::{CreateSession, SessionCreated};
use weft_tests::lsp::{LspEditor, file_uri};
use weft_tests::{Auth, HubProcess, WeftPeer, WeftProcess, http, wait_until};

const T: Duration = Duration::from_secs(60);

/// The PEM files of a test CA and of a hub certificate it signed.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Pki {
    /// A CA, and a certificate for `localhost` and `127.0.0.1` signed by it.
    fn new(dir: &Path) -> anyhow::Result<Pki> {
        std::fs::create_dir_all(dir)?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "weft test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
        let mut hub = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        hub.distinguished_name.push(DnType::CommonName, "weft test hub");
        hub.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate()?;
        let cert = hub.signed_by(&key, &ca)?;
        let pki = Pki { ca: dir.join("ca.pem"), cert: dir.join("hub.pem"), key: dir.join("hub.key") };
        std::fs::write(&pki.ca, ca.pem())?;
        std::fs::write(&pki.cert, cert.pem())?;
        std::fs::write(&pki.key, key.serialize_pem())?;
        Ok(pki)
    }

    fn hub(&self, data: &Path) -> anyhow::Result<HubProcess> {
        let (cert, key) = (self.cert.to_string_lossy(), self.key.to_string_lossy());
        let hub = HubProcess::start_with(data, &["--tls-cert", &cert, "--tls-key", &key])?;
        anyhow::ensure!(hub.tls, "the hub's first line does not say https://");
        Ok(hub)
    }

    fn trusting(&self) -> anyhow::Result<ClientTls> {
        ClientTls::new(&TlsOptions { ca: Some(self.ca.clone()), insecure: false })
    }
}

fn tls_addr(hub: &HubProcess) -> HubAddr {
    HubAddr { authority: hub.addr.to_string(), tls: true }
}

async fn create_session(hub: &HubProcess, tls: &ClientTls, name: &str) -> anyhow::Result<SessionCreated> {
    let body = CreateSession { name: name.into(), public: false, template: None };
    hub_api::call(&tls_addr(hub), tls, "POST", "/api/sessions", &hub.admin, Some(&body)).await
}

fn read(root: &Path, rel: &str) -> Option<String> {
    std::fs::read_to_string(root.join(rel)).ok()
}

/// The hub survived whatever a test threw at it.
fn assert_healthy(hub: &mut HubProcess) {
    assert!(hub.is_running(), "the hub exited; its log:\n{}", hub.log());
    assert!(!hub.log().contains("panicked"), "the hub panicked; its log:\n{}", hub.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_share_and_join_over_tls() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = Pki::new(&dir.path().join("pki"))?;
    let mut hub = pki.hub(&dir.path().join("hub"))?;
    let tls = pki.trusting()?;

    // REST over HTTPS with the admin token; links name the TLS scheme.
    let created = create_session(&hub, &tls, "over tls").await?;
    let expected = format!("weft+tls://{}/s/{}#", hub.addr, created.id);
    assert!(created.owner.url.starts_with(&expected), "{}", created.owner.url);
    let health: serde_json::Value = hub_api::call(&tls_addr(&hub), &tls, "GET", "/healthz", "", None::<&()>).await?;
    assert_eq!(health["status"], "ok");

    // `weft share --hub wss://...` and `weft join weft+tls://...`, both with --ca.
    let (host, guest) = (dir.path().join("host"), dir.path().join("guest"));
    std::fs::create_dir_all(&host)?;
    std::fs::write(host.join("main.rs"), "fn main() {}\n")?;
    let ca = pki.ca.to_string_lossy().into_owned();
    let mut share = WeftProcess::spawn(
        &["share", &host.to_string_lossy(), "--hub", &hub.ws_base(), "--ca", &ca],
        &[("WEFT_HUB_TOKEN", &hub.admin)],
        &dir.path().join("share.stderr"),
    )?;
    let editor = share.next_line(T)?;
    let link = editor.strip_prefix("editor: ").unwrap_or_default().to_owned();
    assert!(link.starts_with(&format!("weft+tls://{}/s/", hub.addr)), "{editor}");
    let mut join = WeftProcess::spawn(
        &["join", &link, &guest.to_string_lossy(), "--ca", &ca],
        &[],
        &dir.path().join("join.stderr"),
    )?;
    let joined = join.next_line(T)?;
    assert!(joined.ends_with(" as editor"), "{joined}");
    assert_eq!(read(&guest, "main.rs").as_deref(), Some("fn main() {}\n"));

    // Both ways.
    std::fs::write(host.join("main.rs"), "fn main() { host(); }\n")?;
    wait_until("the host's edit on the guest", T, || read(&guest, "main.rs").is_some_and(|t| t.contains("host()")))?;
    std::fs::write(guest.join("lib.rs"), "pub fn guest() {}\n")?;
    wait_until("the guest's new file on the host", T, || read(&host, "lib.rs").is_some_and(|t| t.contains("guest")))?;

    join.kill();
    share.kill();
    assert_healthy(&mut hub);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_the_ca_refuses_the_certificate() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = Pki::new(&dir.path().join("pki"))?;
    let mut hub = pki.hub(&dir.path().join("hub"))?;
    let created = create_session(&hub, &pki.trusting()?, "untrusted").await?;

    // REST with the system's roots only.
    let system_only = ClientTls::new(&TlsOptions::default())?;
    let err = create_session(&hub, &system_only, "nope").await.err().map(|e| format!("{e:#}")).unwrap_or_default();
    assert!(err.contains("not trusted") && err.contains("--ca"), "{err}");

    // `weft join` gives up at once with the reason, instead of retrying.
    let mut join = WeftProcess::spawn(
        &["join", &created.owner.url, &dir.path().join("guest").to_string_lossy()],
        &[],
        &dir.path().join("join.stderr"),
    )?;
    let status = join.wait_exit(T)?;
    let stderr = join.stderr();
    assert!(!status.success(), "join succeeded without the CA: {stderr}");
    assert!(stderr.contains("not trusted") && stderr.contains("--ca"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // `weft share` on that hub fails the same way.
    let host = dir.path().join("host");
    std::fs::create_dir_all(&host)?;
    let mut share = WeftProcess::spawn(
        &["share", &host.to_string_lossy(), "--hub", &hub.ws_base()],
        &[("WEFT_HUB_TOKEN", &hub.admin)],
        &dir.path().join("share.stderr"),
    )?;
    assert!(!share.wait_exit(T)?.success());
    assert!(share.stderr().contains("not trusted"), "{}", share.stderr());

    wait_until("the hub to log the failed handshakes", T, || hub.log().contains("TLS handshake failed"))?;
    assert_healthy(&mut hub);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_editor_bridge_shares_and_joins_over_tls() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = Pki::new(&dir.path().join("pki"))?;
    let mut hub = pki.hub(&dir.path().join("hub"))?;
    let ca = pki.ca.to_string_lossy().into_owned();
    let root = |name: &str| -> anyhow::Result<String> {
        let path = dir.path().join(name);
        std::fs::create_dir_all(&path)?;
        Ok(file_uri(&path))
    };

    // WEFT_HUB=wss://... with WEFT_CA: the share answers with TLS links.
    let env = [("WEFT_HUB", hub.ws_base()), ("WEFT_HUB_TOKEN", hub.admin.clone()), ("WEFT_CA", ca.clone())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut alice = LspEditor::spawn_with(&dir.path().join("alice"), "alice", &[], &env)?;
    alice.initialize("utf-16", "alice").await?;
    let shared = alice.share(&root("alice-root")?, None).await?;
    let link = shared["links"]["editor"].as_str().unwrap_or_default().to_owned();
    assert!(link.starts_with("weft+tls://"), "{shared}");

    // Without the CA, weft/join fails and says why; with it, it joins.
    let mut bob = LspEditor::spawn_with(&dir.path().join("bob"), "bob", &[], &[("WEFT_HUB_TOKEN", "unused")])?;
    bob.initialize("utf-16", "bob").await?;
    let err = bob.join(&link, None, &root("bob-root")?).await.err().map(|e| format!("{e:#}")).unwrap_or_default();
    assert!(err.contains("not trusted") && err.contains("--ca"), "{err}");
    let mut carol = LspEditor::spawn_with(&dir.path().join("carol"), "carol", &["--ca", &ca], &[])?;
    carol.initialize("utf-16", "carol").await?;
    let joined = carol.join(&link, None, &root("carol-root")?).await?;
    assert_eq!(joined["role"], "editor", "{joined}");

    // A plain hub off loopback is refused before anything is sent.
    let plain = format!("ws://0.0.0.0:{}", hub.addr.port());
    let err = bob.share(&root("bob-share")?, Some(&plain)).await.err().map(|e| format!("{e:#}")).unwrap_or_default();
    assert!(err.contains("--insecure"), "{err}");

    for editor in [&mut alice, &mut bob, &mut carol] {
        editor.shutdown().await?;
    }
    assert_healthy(&mut hub);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_client_to_the_tls_port_fails_cleanly() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = Pki::new(&dir.path().join("pki"))?;
    let mut hub = pki.hub(&dir.path().join("hub"))?;
    let tls = pki.trusting()?;
    let created = create_session(&hub, &tls, "plain").await?;

    // A ws:// WebSocket: no welcome, whatever the failure looks like.
    let base = format!("ws://{}", hub.addr);
    let auth = Auth { token: &created.owner.token, name: "plain", ..Auth::default() };
    let attempt = tokio::time::timeout(T, WeftPeer::connect(&base, &created.id.0, auth, 7)).await?;
    assert!(!matches!(attempt, Ok(Ok(_))), "a plain WebSocket was welcomed by the TLS port");
    // Plain HTTP gets no answer either.
    let plain = tokio::time::timeout(T, http(hub.addr, "GET", "/healthz", None, &[], None)).await?;
    assert!(!matches!(plain, Ok((200, _))), "plain HTTP was served: {plain:?}");

    wait_until("the hub to log the failed handshake", T, || hub.log().contains("TLS handshake failed"))?;
    // The hub still serves TLS clients.
    create_session(&hub, &tls, "still fine").await?;
    assert_healthy(&mut hub);
    Ok(())
}

#[test]
fn bad_pem_files_stop_the_hub_with_a_clear_message() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = Pki::new(&dir.path().join("pki"))?;
    let other = Pki::new(&dir.path().join("other"))?;
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n")?;
    let missing = dir.path().join("missing.pem");
    let path = |p: &Path| p.to_string_lossy().into_owned();
    // (certificate, key, what the message must contain)
    let cases = [
        (path(&garbage), path(&pki.key), vec![path(&garbage), "--tls-cert".into()]),
        (path(&pki.cert), path(&garbage), vec![path(&garbage), "--tls-key".into()]),
        (path(&missing), path(&pki.key), vec![path(&missing), "--tls-cert".into()]),
        (path(&pki.cert), path(&missing), vec![path(&missing), "--tls-key".into()]),
        (path(&pki.cert), path(&other.key), vec!["do not fit together".into()]),
    ];
    for (i, (cert, key, wanted)) in cases.iter().enumerate() {
        let data = dir.path().join(format!("hub{i}"));
        let mut hub = WeftProcess::spawn(
            &["hub", "--listen", "127.0.0.1:0", "--data", &path(&data), "--tls-cert", cert, "--tls-key", key],
            &[],
            &dir.path().join(format!("hub{i}.stderr")),
        )?;
        let status = hub.wait_exit(T)?;
        let stderr = hub.stderr();
        assert!(!status.success(), "case {i}: the hub started: {stderr}");
        for w in wanted {
            assert!(stderr.contains(w.as_str()), "case {i}: {w:?} missing from:\n{stderr}");
        }
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!data.join("hub.db").exists(), "case {i}: the hub opened its database before checking TLS");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_off_loopback_needs_insecure() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // The hub refuses to serve plain HTTP on all interfaces...
    let mut refused = WeftProcess::spawn(
        &["hub", "--listen", "0.0.0.0:0", "--data", &dir.path().join("refused").to_string_lossy()],
        &[],
        &dir.path().join("refused.stderr"),
    )?;
    assert!(!refused.wait_exit(T)?.success());
    let stderr = refused.stderr();
    assert!(stderr.contains("--tls-cert") && stderr.contains("--insecure"), "{stderr}");

    // ...unless told it is fine.
    let hub = HubProcess::start_with(&dir.path().join("hub"), &["--listen", "0.0.0.0:0", "--insecure"])?;
    let local = std::net::SocketAddr::from(([127, 0, 0, 1], hub.addr.port()));
    let (status, body) = http(
        local,
        "POST",
        "/api/sessions",
        Some(&hub.admin),
        &[],
        Some(&serde_json::json!({"name": "lan"}).to_string()),
    )
    .await?;
    assert_eq!(status, 201, "{body}");
    // The link names 0.0.0.0, which is not loopback (yet reaches this machine).
    let link = body["owner"]["url"].as_str().unwrap_or_default().to_owned();
    assert!(link.starts_with("weft://0.0.0.0:"), "{link}");

    // Clients refuse a plain hub off loopback...
    let guest = dir.path().join("guest");
    let mut join = WeftProcess::spawn(&["join", &link, &guest.to_string_lossy()], &[], &dir.path().join("j1.stderr"))?;
    assert!(!join.wait_exit(T)?.success());
    assert!(join.stderr().contains("--insecure"), "{}", join.stderr());
    let host = dir.path().join("host");
    std::fs::create_dir_all(&host)?;
    let mut share = WeftProcess::spawn(
        &["share", &host.to_string_lossy(), "--hub", &format!("ws://0.0.0.0:{}", hub.addr.port())],
        &[("WEFT_HUB_TOKEN", &hub.admin)],
        &dir.path().join("share.stderr"),
    )?;
    assert!(!share.wait_exit(T)?.success());
    assert!(share.stderr().contains("--insecure"), "{}", share.stderr());

    // ...and use it with --insecure or WEFT_INSECURE=1.
    let mut join = WeftProcess::spawn(
        &["join", &link, &guest.to_string_lossy(), "--insecure"],
        &[],
        &dir.path().join("j2.stderr"),
    )?;
    assert!(join.next_line(T)?.ends_with(" as owner"));
    join.kill();
    let mut join = WeftProcess::spawn(
        &["join", &link, &guest.to_string_lossy()],
        &[("WEFT_INSECURE", "1")],
        &dir.path().join("j3.stderr"),
    )?;
    assert!(join.next_line(T)?.ends_with(" as owner"));
    join.kill();
    Ok(())
}
