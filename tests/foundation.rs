//! The foundation, end to end: `kexin init` for every algorithm and both key
//! stores, `kexin serve` over HTTP and HTTPS, SQLite and PostgreSQL, checked
//! with openssl, curl, pkcs11-tool and gmssl.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use der::{DecodePem, Encode};
use kexin_test_support::{openssl, SoftHsm, TOKEN_PIN};
use x509_cert::Certificate;

fn init(dir: &Path, extra: &[&str]) -> String {
    let out = run_ok(kexin(dir).args(["init", "--data", "data"]).args(extra));
    String::from_utf8(out.stdout).unwrap()
}

fn verify_chain_with_openssl(data: &Path) {
    let root = path_str(&data.join("ca/root.pem"));
    for ca in ["officials", "systems", "seals"] {
        let (ok, out) = openssl(&[
            "verify",
            "-x509_strict",
            "-check_ss_sig",
            "-CAfile",
            &root,
            &path_str(&data.join(format!("ca/{ca}.pem"))),
        ]);
        assert!(ok, "{ca}: {out}");
    }
    let systems = path_str(&data.join("ca/systems.pem"));
    let (ok, out) = openssl(&[
        "verify",
        "-x509_strict",
        "-purpose",
        "sslserver",
        "-CAfile",
        &root,
        "-untrusted",
        &systems,
        &path_str(&data.join("tls/server-chain.pem")),
    ]);
    assert!(ok, "TLS chain: {out}");
}

fn load(data: &Path, name: &str) -> Certificate {
    Certificate::from_pem(std::fs::read(data.join(format!("ca/{name}.pem"))).unwrap()).unwrap()
}

fn check_rfc5280_shape(data: &Path) {
    for name in ["root", "officials", "systems", "seals"] {
        let (_, text) = openssl(&[
            "x509",
            "-noout",
            "-text",
            "-in",
            &path_str(&data.join(format!("ca/{name}.pem"))),
        ]);
        assert!(
            text.contains("X509v3 Basic Constraints: critical"),
            "{name}: {text}"
        );
        assert!(text.contains("X509v3 Key Usage: critical"), "{name}");
        assert!(text.contains("Certificate Sign, CRL Sign"), "{name}");
        assert!(text.contains("X509v3 Subject Key Identifier"), "{name}");
        let cert = load(data, name);
        assert!(
            cert.tbs_certificate.serial_number.as_bytes().len() >= 9,
            "{name}: serial under 64 bits"
        );
        if name == "root" {
            assert!(!text.contains("pathlen"), "root must not limit path length");
        } else {
            assert!(text.contains("CA:TRUE, pathlen:0"), "{name}");
            assert!(text.contains("X509v3 Authority Key Identifier"), "{name}");
            assert!(
                text.contains("CA Issuers - URI:http://127.0.0.1:"),
                "{name}: AIA"
            );
            assert!(text.contains("/pki/ca/root.crt"), "{name}: AIA");
            assert!(text.contains("/pki/crl/root.crl"), "{name}: CDP");
            assert!(
                text.contains("OCSP - URI:http://127.0.0.1:"),
                "{name}: OCSP"
            );
        }
    }
}

#[test]
fn init_builds_a_verifiable_hierarchy_for_each_algorithm() {
    for (alg, sig_text) in [
        ("ecdsa-p256", "ecdsa-with-SHA256"),
        ("ecdsa-p384", "ecdsa-with-SHA384"),
        ("rsa-3072", "sha256WithRSAEncryption"),
        ("ed25519", "ED25519"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        init(tmp.path(), &["--alg", alg]);
        let data = data_dir(tmp.path());
        verify_chain_with_openssl(&data);
        check_rfc5280_shape(&data);
        let (_, text) = openssl(&[
            "x509",
            "-noout",
            "-text",
            "-in",
            &path_str(&data.join("ca/officials.pem")),
        ]);
        assert!(
            text.contains(&format!("Signature Algorithm: {sig_text}")),
            "{alg}: {text}"
        );
    }
}

/// One SM2 key in 256 has an x coordinate whose hex starts with "04"; gmssl
/// mangles such a key if it is handed to its constructor, and then rejects
/// every signature by it (an OpenSSL-made signature here).
#[test]
fn gmssl_checks_signatures_by_keys_whose_x_begins_with_04() {
    let xy = hex::decode(
        "04e40c2337c5d40fe796b89db61c7c3899cf1dc08d39fc1d2897f4f2517e3425\
         c50f4950f5b9c786a7e9dd54911d98787286986380217ba419332e455419beac",
    )
    .unwrap();
    let signature = hex::decode(
        "c2e607fa1e7a27c478d3903b13e7774c0148a84ff6d42379917ba3c00bf731ec\
         e1b3299b932f0866dc810fa10c17b1b17dad51529468fe0f55a2b3a134cc9b22",
    )
    .unwrap();
    let message = b"MGlPqj2vfBkBT_DKFkODy6NLDTg_ZcKcW6E8TrwRtkRVTzHdrby9oC6BNT6whIBwfn9Aqc46LmPDfl-i1fNpGf5uNiDbncfyXCaITPt6K3osKuvym1FxsQRoaleacx1SCVkzO0ESQSfFkJT1Putrx5E7maSXYMgY09t7dKoNzaC_ZgGBRCtVoeh--3tDc663tHljgHvw";
    assert!(gmssl_sm2_verifies(&xy, &signature, false, message));
    assert!(!gmssl_sm2_verifies(&xy, &signature, false, &message[1..]));
}

#[test]
fn sm2_hierarchy_verifies_with_an_independent_gmt_implementation() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path(), &["--alg", "sm2"]);
    let data = data_dir(tmp.path());
    check_rfc5280_shape(&data);
    let root = load(&data, "root");
    for name in ["root", "officials", "systems", "seals"] {
        let cert = load(&data, name);
        assert_eq!(
            cert.signature_algorithm.oid.to_string(),
            "1.2.156.10197.1.501",
            "{name} is signed SM2-with-SM3"
        );
        let tbs = cert.tbs_certificate.to_der().unwrap();
        let sig = cert.signature.raw_bytes();
        assert!(
            gmssl_verifies(&tbs, sig, &root),
            "{name} fails GM/T verification"
        );
        let mut tampered = tbs.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(
            !gmssl_verifies(&tampered, sig, &root),
            "{name}: tampered TBS accepted"
        );
    }
    // The HTTPS certificate has a P-256 key (TLS has no SM2) under the SM2 systems CA.
    let chain = std::fs::read(data.join("tls/server-chain.pem")).unwrap();
    let leaf = Certificate::load_pem_chain(&chain).unwrap().remove(0);
    assert_eq!(
        leaf.tbs_certificate
            .subject_public_key_info
            .algorithm
            .parameters
            .as_ref()
            .unwrap()
            .to_der()
            .unwrap(),
        der::asn1::ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7")
            .to_der()
            .unwrap()
    );
    let systems = load(&data, "systems");
    assert!(gmssl_verifies(
        &leaf.tbs_certificate.to_der().unwrap(),
        leaf.signature.raw_bytes(),
        &systems
    ));
}

#[test]
fn init_refuses_to_overwrite_a_data_directory() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path(), &[]);
    let before = std::fs::read(data_dir(tmp.path()).join("ca/root.pem")).unwrap();
    let out = kexin(tmp.path())
        .args(["init", "--data", "data"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to overwrite"), "{err}");
    assert_eq!(
        std::fs::read(data_dir(tmp.path()).join("ca/root.pem")).unwrap(),
        before
    );
}

#[test]
fn soft_key_store_is_encrypted_and_needs_its_passphrase() {
    let tmp = tempfile::tempdir().unwrap();
    run_ok(
        kexin(tmp.path())
            .args(["init", "--data", "data"])
            .env("KEXIN_KEYSTORE_PASSPHRASE", PASSPHRASE),
    );
    let data = data_dir(tmp.path());
    assert!(
        !data.join("keystore.pass").exists(),
        "no passphrase file when one was given"
    );
    for entry in std::fs::read_dir(data.join("keystore/keys")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(!text.contains("PRIVATE KEY"));
    }
    let out = kexin(tmp.path())
        .args(["audit", "verify", "--data", "data"])
        .env("KEXIN_KEYSTORE_PASSPHRASE", "the wrong passphrase")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong key store passphrase"));
    let out = kexin(tmp.path())
        .args(["audit", "verify", "--data", "data"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("KEXIN_KEYSTORE_PASSPHRASE"));
}

#[test]
fn invalid_configuration_fails_with_the_key_and_reason() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path(), &[]);
    let cfg = data_dir(tmp.path()).join("kexin.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("max_body_bytes = 65536", "max_body_bytes = \"big\""),
    )
    .unwrap();
    let out = kexin(tmp.path())
        .args(["serve", "--data", "data"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("http.max_body_bytes"), "{err}");
    assert!(err.contains("kexin.toml"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    std::fs::write(&cfg, text).unwrap();
    let out = kexin(tmp.path())
        .args(["serve", "--data", "data"])
        .env("KEXIN_HTTPS__LISTEN", "nowhere")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("https.listen") && err.contains("environment"),
        "{err}"
    );
}

fn serve_cmd(dir: &Path, http: u16, https: u16) -> Command {
    let mut cmd = kexin(dir);
    cmd.args(["serve", "--data", "data"])
        .args(["--http", &format!("127.0.0.1:{http}")])
        .args(["--https", &format!("127.0.0.1:{https}")])
        .env("RUST_LOG", "info");
    cmd
}

fn check_running_server(server: &Server, data: &Path) {
    let (code, der) = curl(&[&format!("{}/pki/ca/root.crt", server.http)]);
    assert_eq!(code, 200);
    assert_eq!(der, load(data, "root").to_der().unwrap());
    for ca in ["officials", "systems", "seals"] {
        let (code, der) = curl(&[&format!("{}/pki/ca/{ca}.crt", server.http)]);
        assert_eq!(code, 200);
        assert_eq!(der, load(data, ca).to_der().unwrap());
    }
    let (code, body) = curl(&[&format!("{}/pki/ca/nobody.crt", server.http)]);
    assert_eq!(code, 404);
    assert!(String::from_utf8_lossy(&body).contains("\"status\":404"));

    let root = path_str(&data.join("ca/root.pem"));
    let (code, body) = curl(&["--cacert", &root, &format!("{}/healthz", server.https)]);
    assert_eq!(
        (code, String::from_utf8_lossy(&body).contains("ok")),
        (200, true)
    );
    let (code, body) = curl(&["--cacert", &root, &format!("{}/readyz", server.https)]);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    // Metrics need an officer's certificate (tests/ca_core.rs).
    let (code, body) = curl(&["--cacert", &root, &format!("{}/metrics", server.https)]);
    assert_eq!(code, 401, "{}", String::from_utf8_lossy(&body));
    // TLS 1.3 settles on AES-128-GCM even for a client that lists AES-256
    // first (openssl's default order), a client offering only AES-256 is
    // still served, and no session tickets are sent (README, Key stores).
    let port = server.https.rsplit(':').next().unwrap();
    let s_client = |suites: &str| {
        let script = format!(
            "(sleep 0.5) | openssl s_client -connect 127.0.0.1:{port} -tls1_3 -msg \
             -CAfile {root} -ciphersuites {suites} 2>&1"
        );
        let out = Command::new("sh").args(["-c", &script]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let default_order = s_client("TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256");
    assert!(
        default_order.contains("Verify return code: 0 (ok)"),
        "{default_order}"
    );
    assert!(
        default_order.contains("Cipher is TLS_AES_128_GCM_SHA256"),
        "{default_order}"
    );
    assert!(
        !default_order.contains("NewSessionTicket"),
        "{default_order}"
    );
    let aes256_only = s_client("TLS_AES_256_GCM_SHA384");
    assert!(
        aes256_only.contains("Cipher is TLS_AES_256_GCM_SHA384"),
        "{aes256_only}"
    );

    // The HTTPS certificate must be trusted through our root only.
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            &format!("{}/healthz", server.https),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "HTTPS trusted without our root");
}

#[test]
fn serve_answers_over_http_and_https_and_stops_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let (http, https) = (free_port(), free_port());
    run_ok(
        kexin(tmp.path())
            .args(["init", "--data", "data"])
            .env("KEXIN_HTTP__LISTEN", format!("127.0.0.1:{http}")),
    );
    let data = data_dir(tmp.path());
    let server = Server::start(serve_cmd(tmp.path(), http, https), http, https);
    check_running_server(&server, &data);
    let (status, output) = server.stop();
    assert!(status.success(), "{output}");
    assert!(output.contains("shutting down"), "{output}");
    assert!(output.contains("stopped"), "{output}");
    let out = run_ok(kexin(tmp.path()).args(["audit", "verify", "--data", "data"]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("audit log intact: 21 entries"));
}

#[test]
fn serve_without_arguments_initializes_the_embedded_default() {
    let tmp = tempfile::tempdir().unwrap();
    let (http, https) = (free_port(), free_port());
    let mut cmd = kexin(tmp.path());
    cmd.arg("serve")
        .env("KEXIN_HTTP__LISTEN", format!("127.0.0.1:{http}"))
        .env("KEXIN_HTTPS__LISTEN", format!("127.0.0.1:{https}"));
    let server = Server::start(cmd, http, https);
    let data = tmp.path().join("kexin-data");
    let (code, _) = curl(&[&format!("{}/pki/ca/root.crt", server.http)]);
    assert_eq!(code, 200);
    let (status, output) = server.stop();
    assert!(status.success());
    assert!(
        output.contains("First run: initializing ./kexin-data"),
        "{output}"
    );
    assert!(
        output.contains(&format!("http://127.0.0.1:{http}/pki/ca/root.crt")),
        "{output}"
    );
    assert!(
        output.contains(&format!("https://127.0.0.1:{https}/healthz")),
        "{output}"
    );
    let config = std::fs::read_to_string(data.join("kexin.toml")).unwrap();
    assert!(config.contains("backend = \"soft\""));
    assert!(data.join("kexin.db").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join("keystore.pass"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    verify_chain_with_openssl(&data);
}

#[test]
fn pkcs11_keys_stay_on_the_token_and_serve_tls() {
    let tmp = tempfile::tempdir().unwrap();
    let token = SoftHsm::new("kexin-e2e");
    let (http, https) = (free_port(), free_port());
    let with_token = |cmd: &mut Command| {
        cmd.env("SOFTHSM2_CONF", &token.conf)
            .env("KEXIN_PKCS11_PIN", TOKEN_PIN);
    };
    let mut cmd = kexin(tmp.path());
    cmd.args([
        "init",
        "--data",
        "data",
        "--keystore",
        "pkcs11",
        "--pkcs11-token",
        "kexin-e2e",
    ])
    .args(["--alg", "ecdsa-p384"])
    .env("KEXIN_HTTP__LISTEN", format!("127.0.0.1:{http}"));
    with_token(&mut cmd);
    let stdout = String::from_utf8(run_ok(&mut cmd).stdout).unwrap();
    assert!(stdout.contains("pkcs11 key store"), "{stdout}");
    let data = data_dir(tmp.path());
    assert!(
        !data.join("keystore").exists(),
        "no soft key store with pkcs11"
    );
    verify_chain_with_openssl(&data);

    let objects = token.list_objects();
    for label in [
        "ca-root",
        "ca-officials",
        "ca-systems",
        "ca-seals",
        "tls-https",
    ] {
        let block = objects
            .split("Private Key Object")
            .map(|b| b.split("Public Key Object").next().unwrap())
            .find(|b| b.contains(label))
            .unwrap_or_else(|| panic!("no private key {label} on the token:\n{objects}"));
        let field = |name: &str| -> Vec<String> {
            block
                .lines()
                .find_map(|l| l.trim().strip_prefix(name))
                .unwrap_or_else(|| panic!("{label}: no {name} in {block}"))
                .split(',')
                .map(|s| s.trim().to_owned())
                .collect()
        };
        let access = field("Access:");
        assert!(
            access.contains(&"sensitive".to_owned()),
            "{label}: {access:?}"
        );
        assert!(
            access.contains(&"never extractable".to_owned()),
            "{label}: {access:?}"
        );
        assert!(
            !access.contains(&"extractable".to_owned()),
            "{label}: {access:?}"
        );
        assert_eq!(
            field("Usage:"),
            vec!["sign".to_owned()],
            "{label}: signing keys only sign"
        );
    }

    let mut cmd = serve_cmd(tmp.path(), http, https);
    with_token(&mut cmd);
    let server = Server::start(cmd, http, https);
    check_running_server(&server, &data);
    let (status, output) = server.stop();
    assert!(status.success(), "{output}");

    // A CA whose key is on the token is renewed (its key found there, the
    // root signing on the token), and the renewal chains to the root.
    let mut cmd = kexin(tmp.path());
    cmd.args(["ca", "renew", "--data", "data", "--name", "officials"])
        .args(["--days", "4000"]);
    with_token(&mut cmd);
    let stdout = String::from_utf8(run_ok(&mut cmd).stdout).unwrap();
    assert!(stdout.contains("renewed CA officials"), "{stdout}");
    verify_chain_with_openssl(&data);
    // It ends later than the ten years of the certificate it replaces.
    let officials = path_str(&data.join("ca/officials.pem"));
    let beyond = (3700 * 86400).to_string();
    let (ok, out) = openssl(&["x509", "-in", &officials, "-noout", "-checkend", &beyond]);
    assert!(ok && out.contains("will not expire"), "{out}");

    // SM2 cannot be put on SoftHSM2, and init says so instead of failing later.
    let tmp2 = tempfile::tempdir().unwrap();
    let mut cmd = kexin(tmp2.path());
    cmd.args([
        "init",
        "--data",
        "data",
        "--keystore",
        "pkcs11",
        "--pkcs11-token",
        "kexin-e2e",
        "--alg",
        "sm2",
    ]);
    with_token(&mut cmd);
    let out = cmd.output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("SM2"));
    assert!(
        !data_dir(tmp2.path()).exists(),
        "failed init left a data directory"
    );
}

#[test]
fn postgres_backend_end_to_end() {
    let url = fresh_postgres_url();
    let tmp = tempfile::tempdir().unwrap();
    let (http, https) = (free_port(), free_port());
    let stdout = String::from_utf8(
        run_ok(
            kexin(tmp.path())
                .args(["init", "--data", "data", "--db", &url])
                .env("KEXIN_HTTP__LISTEN", format!("127.0.0.1:{http}")),
        )
        .stdout,
    )
    .unwrap();
    assert!(stdout.contains("database postgres://"), "{stdout}");
    let data = data_dir(tmp.path());
    assert!(
        !data.join("kexin.db").exists(),
        "no SQLite file with PostgreSQL"
    );
    let server = Server::start(serve_cmd(tmp.path(), http, https), http, https);
    check_running_server(&server, &data);
    server.stop();
    let out = run_ok(kexin(tmp.path()).args(["audit", "verify", "--data", "data"]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("intact: 21 entries"));

    // A second instance must not share the database.
    let tmp2 = tempfile::tempdir().unwrap();
    let out = kexin(tmp2.path())
        .args(["init", "--data", "data", "--db", &url])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already holds a CA hierarchy"));
}

#[test]
fn audit_verify_detects_an_edited_entry() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path(), &[]);
    let db = data_dir(tmp.path()).join("kexin.db");
    let status = Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\n\
             c.execute(\"UPDATE audit_log SET actor = 'officer:mallory' WHERE seq = 4\")\nc.commit()",
            &path_str(&db),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let out = kexin(tmp.path())
        .args(["audit", "verify", "--data", "data"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("BROKEN at entry 4"));
}

/// Runs tests/validators/proxied_client.py (see there) and returns what
/// each connection got.
fn proxied(ca: &Ca, args: &[&str], body: &[u8]) -> Vec<String> {
    use std::io::Write;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/validators/proxied_client.py");
    let mut child = Command::new("python3")
        .arg(script)
        .args(args)
        .env("PROXIED_CA", ca.ca_pem("root"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(body).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Behind a TCP load balancer that names each client in a PROXY protocol
/// header (`proxy_protocol_from`), clients are told apart on both
/// listeners: the verify portal limits each citizen, not the balancer, and
/// the token log names the client that asked. A connection from the
/// balancer without a header is closed unanswered.
#[test]
fn clients_behind_a_trusted_load_balancer_are_told_apart() {
    let ca = Ca::init(&[]);
    let config = ca.data.join("kexin.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert_eq!(
        text.matches("proxy_protocol_from = []").count(),
        2,
        "{text}"
    );
    let text = text.replace(
        "proxy_protocol_from = []",
        r#"proxy_protocol_from = ["127.0.0.0/8"]"#,
    );
    std::fs::write(&config, text).unwrap();
    let _server = ca.serve();
    let (http, https) = (ca.http.to_string(), ca.https.to_string());
    let license = "/verify/license?t=x";

    let citizen = proxied(
        &ca,
        &[
            "1",
            "https",
            &https,
            "203.0.113.7",
            "GET",
            license,
            "-",
            "21",
        ],
        b"",
    );
    assert!(
        citizen[..20].iter().all(|c| c != "429" && c != "closed"),
        "{citizen:?}"
    );
    assert_eq!(
        citizen[20], "429",
        "the portal's per-minute limit counts this citizen"
    );
    let neighbour = proxied(
        &ca,
        &[
            "2",
            "https",
            &https,
            "2001:db8:7::1",
            "GET",
            license,
            "-",
            "1",
        ],
        b"",
    );
    assert!(
        neighbour[0] != "429" && neighbour[0] != "closed",
        "another citizen is not limited: {neighbour:?}"
    );
    let unannounced = proxied(
        &ca,
        &[
            "none",
            "https",
            &https,
            "127.0.0.1",
            "GET",
            license,
            "-",
            "1",
        ],
        b"",
    );
    assert_eq!(unannounced, ["closed"]);

    let query = ca.file("req.tsq");
    std::fs::write(ca.file("doc.txt"), b"behind a load balancer").unwrap();
    let (ok, err) = openssl(&[
        "ts",
        "-query",
        "-data",
        &ca.file("doc.txt"),
        "-sha256",
        "-out",
        &query,
    ]);
    assert!(ok, "{err}");
    let query = std::fs::read(query).unwrap();
    let stamped = proxied(
        &ca,
        &[
            "2",
            "http",
            &http,
            "198.51.100.20",
            "POST",
            "/tsa",
            "application/timestamp-query",
            "1",
        ],
        &query,
    );
    assert_eq!(stamped, ["200"]);
    let unannounced = proxied(
        &ca,
        &[
            "none",
            "http",
            &http,
            "127.0.0.1",
            "POST",
            "/tsa",
            "application/timestamp-query",
            "1",
        ],
        &query,
    );
    assert_eq!(unannounced, ["closed"]);
    let requesters = sqlite_value(
        &ca.data.join("kexin.db"),
        "select group_concat(requester, ' ') from timestamp_tokens",
    );
    assert_eq!(requesters, "198.51.100.20");
}

/// Two nodes on one PostgreSQL database, as behind a balancer: a citizen's
/// 20 portal checks a minute are one allowance, whichever node answers; the
/// 21st is refused at both.
#[test]
fn a_citizen_has_one_portal_allowance_across_the_nodes_of_an_instance() {
    let url = fresh_postgres_url();
    let ca = Ca::init(&["--db", &url]);
    let _first = ca.serve();
    let (_second, second) = ca.serve_another_node();
    let root = ca.ca_pem("root");
    let check = |port: u16| {
        let url = format!("https://localhost:{port}/verify/license?t=x");
        curl(&["--cacert", &root, &url]).0
    };
    // Counts are kept by the minute: begin early in one.
    let second_of_minute = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 60;
    if second_of_minute > 40 {
        std::thread::sleep(std::time::Duration::from_secs(61 - second_of_minute));
    }
    for n in 0..20 {
        let port = if n % 2 == 0 { ca.https } else { second };
        assert_ne!(check(port), 429, "check {n} at {port}");
    }
    assert_eq!(check(ca.https), 429);
    assert_eq!(check(second), 429);
}

/// An instance whose PostgreSQL is across a network reaches it over TLS
/// with the server's certificate checked: with the database server's CA
/// every connection of the running server is encrypted (the database's own
/// `pg_stat_ssl` says so); with a CA that did not sign the database's
/// certificate, `init` is refused, names why, and leaves no data directory
/// (`verify-ca` too: sqlx asks rustls for the process's default provider
/// there, which panicked until Kexin named one).
#[test]
fn the_database_is_reached_over_verified_tls() {
    let url = fresh_postgres_url();
    let other = tempfile::tempdir().unwrap();
    let wrong_ca = self_signed_ca(other.path(), "not the database's CA");
    let wrong = over_tls(&url, Some(&wrong_ca));
    for db in [wrong.clone(), wrong.replace("verify-full", "verify-ca")] {
        let refused = kexin(other.path())
            .args(["init", "--data", "data", "--db", &db])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success());
        assert!(
            stderr.contains("invalid peer certificate"),
            "{db}: {stderr}"
        );
        assert!(!other.path().join("data").exists());
    }

    let ca = Ca::init(&["--db", &over_tls(&url, None)]);
    let server = ca.serve();
    let (code, _) = curl(&[&format!("http://127.0.0.1:{}/pki/ca/root.crt", ca.http)]);
    assert_eq!(code, 200);
    let database = url.rsplit('/').next().unwrap().to_owned();
    let (encrypted, all): (i64, i64) = tokio::runtime::Runtime::new().unwrap().block_on(async {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&kexin_test_support::postgres_admin_url())
            .await
            .unwrap();
        sqlx::query_as(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_ssl s \
             JOIN pg_stat_activity a USING (pid) WHERE a.datname = $1",
        )
        .bind(&database)
        .fetch_one(&mut admin)
        .await
        .unwrap()
    });
    assert!(all > 0 && encrypted == all, "{encrypted} of {all} over TLS");
    server.stop();
}
