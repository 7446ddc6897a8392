//! Running the real `kexin` binary in tests.
#![allow(dead_code)] // each test file uses a different subset

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use kexin_test_support::openssl;
use x509_cert::Certificate;

pub const PASSPHRASE: &str = "correct horse battery staple";

/// `kexin` with a clean environment apart from what the test adds.
pub fn kexin(cwd: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kexin"));
    cmd.current_dir(cwd)
        .env_remove("KEXIN_KEYSTORE_PASSPHRASE")
        .env_remove("KEXIN_PKCS11_PIN")
        .env("RUST_LOG", "warn");
    cmd
}

/// Runs `cmd` (kexin or any other tool) and asserts that it succeeded.
pub fn run_ok(cmd: &mut Command) -> Output {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{program} does not run: {e}"));
    assert!(
        out.status.success(),
        "{program} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The URL of a fresh PostgreSQL database of its own, for one test.
pub fn fresh_postgres_url() -> String {
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(kexin_test_support::fresh_postgres_database())
}

/// `url` (on 127.0.0.1) with TLS required and the server's certificate
/// checked, name included, against `ca` or else the server's own CA.
/// Debian's PostgreSQL serves TLS with its self-signed "snakeoil"
/// certificate, named for the host it was made on: here `localhost`
/// (`KEXIN_TEST_POSTGRES_TLS_HOST` and `KEXIN_TEST_POSTGRES_CA` name
/// others).
pub fn over_tls(url: &str, ca: Option<&str>) -> String {
    let host = std::env::var("KEXIN_TEST_POSTGRES_TLS_HOST").unwrap_or_else(|_| "localhost".into());
    let ca = ca.map(str::to_owned).unwrap_or_else(|| {
        std::env::var("KEXIN_TEST_POSTGRES_CA")
            .unwrap_or_else(|_| "/etc/ssl/certs/ssl-cert-snakeoil.pem".into())
    });
    let url = url.replacen("@127.0.0.1:", &format!("@{host}:"), 1);
    format!("{url}?sslmode=verify-full&sslrootcert={ca}")
}

/// A self-signed P-256 certificate named `cn`, made by `openssl req` in
/// `dir` (its key beside it): a CA that is not ours. Returns its path.
pub fn self_signed_ca(dir: &Path, cn: &str) -> String {
    let file: String = cn
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let (key, cert) = (
        dir.join(format!("{file}.key")),
        dir.join(format!("{file}.pem")),
    );
    let (ok, out) = kexin_test_support::openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        &format!("/CN={cn}"),
        "-days",
        "1",
        "-keyout",
        &path_str(&key),
        "-out",
        &path_str(&cert),
    ]);
    assert!(ok, "{out}");
    path_str(&cert)
}

/// A port free now, for a server a test starts. Not one the kernel hands
/// out (binding port 0 does): those are the ephemeral ports of outgoing
/// connections, and the tests' own clients (curl, browsers, relying
/// systems) opened in parallel could take it before the server binds it,
/// which made the server exit and the test wait 30 s and fail.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let below = ephemeral_ports_start();
    if below <= 20_000 {
        return TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
    }
    // Above the well-known and registered ports most services use.
    loop {
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let port = 10_000 + (random % u64::from(below - 10_000)) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() && reserve(port) {
            return port;
        }
    }
}

/// Claims `port` for this test process among all test processes on the
/// machine (nextest runs each test in its own; two suites may run at
/// once): a port free when picked is not bound until the server starts,
/// seconds later, and another test picking it meanwhile had its HTTPS
/// client talk to the other test's plain-HTTP server. A claim is a file
/// naming the claiming process, void once that process is gone.
fn reserve(port: u16) -> bool {
    let dir = std::env::temp_dir().join("kexin-test-ports");
    let _ = std::fs::create_dir_all(&dir);
    let claim = dir.join(port.to_string());
    for _ in 0..2 {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&claim)
        {
            Ok(mut file) => {
                use std::io::Write;
                return write!(file, "{}", std::process::id()).is_ok();
            }
            Err(_) => {
                let holder = std::fs::read_to_string(&claim).unwrap_or_default();
                let alive = holder.trim().parse::<u32>().is_ok_and(|pid| {
                    pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists()
                });
                if alive || holder.is_empty() {
                    return false;
                }
                let _ = std::fs::remove_file(&claim);
            }
        }
    }
    false
}

/// The first of the kernel's ports for outgoing connections.
fn ephemeral_ports_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// `kexin serve` of the data directory `data` under `dir`, on these ports.
pub fn serve_data(dir: &Path, http: u16, https: u16) -> Server {
    Server::start(serve_command(dir, http, https), http, https)
}

/// `kexin serve` of `dir/data` on loopback `http` and `https`, for a
/// caller to add to (its environment) before [`Server::start`].
pub fn serve_command(dir: &Path, http: u16, https: u16) -> Command {
    let mut cmd = kexin(dir);
    cmd.args(["serve", "--data", "data"])
        .args(["--http", &format!("127.0.0.1:{http}")])
        .args(["--https", &format!("127.0.0.1:{https}")]);
    cmd
}

/// Runs `statement` on the SQLite database `db` through Python's sqlite3
/// (an independent reader) and commits it; the first column of its first
/// row, if any.
pub fn sqlite_value(db: &Path, statement: &str) -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\nrow = c.execute(sys.argv[2]).fetchone()\nc.commit()\nprint(row[0] if row else '')",
        ])
        .arg(db)
        .arg(statement)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{statement}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A running `kexin serve`, stopped with SIGTERM when dropped.
pub struct Server {
    pub child: Child,
    pub http: String,
    pub https: String,
}

impl Server {
    /// Starts `cmd` (a `kexin serve …` command listening on the given ports)
    /// and waits until the HTTP port answers.
    pub fn start(mut cmd: Command, http_port: u16, https_port: u16) -> Self {
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kexin serve starts");
        let mut server = Self {
            child,
            http: format!("http://127.0.0.1:{http_port}"),
            https: format!("https://localhost:{https_port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", https_port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                let output = server.output();
                panic!("kexin serve exited ({status}) before listening: {output}");
            }
            assert!(
                Instant::now() < deadline,
                "kexin serve did not start listening"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// Sends SIGTERM and returns the exit status and everything printed.
    pub fn stop(mut self) -> (std::process::ExitStatus, String) {
        terminate(&self.child);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, self.output());
            }
            assert!(Instant::now() < deadline, "kexin serve ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Everything the exited server printed, stdout then stderr.
    fn output(&mut self) -> String {
        use std::io::Read;
        let mut text = String::new();
        if let Some(mut o) = self.child.stdout.take() {
            o.read_to_string(&mut text).unwrap();
        }
        if let Some(mut e) = self.child.stderr.take() {
            e.read_to_string(&mut text).unwrap();
        }
        text
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn terminate(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// `curl` POSTing the file `path` as `content_type` to `url`; returns
/// (status code, body).
pub fn curl_post_file(url: &str, content_type: &str, path: &str) -> (u16, Vec<u8>) {
    curl(&[
        "-H",
        &format!("Content-Type: {content_type}"),
        "--data-binary",
        &format!("@{path}"),
        url,
    ])
}

/// `curl` as an independent HTTP client; returns (status code, body).
pub fn curl(args: &[&str]) -> (u16, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-o"])
        .arg(&body)
        .args(["-w", "%{http_code}"])
        .args(args)
        .output()
        .expect("curl runs");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let code = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    (code, std::fs::read(&body).unwrap_or_default())
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}

pub fn data_dir(root: &Path) -> PathBuf {
    root.join("data")
}

/// Verifies `cert`'s SM2-with-SM3 signature with the `gmssl` Python
/// package (an independent GM/T implementation using the default user ID).
pub fn gmssl_verifies(tbs_der: &[u8], signature_der: &[u8], issuer: &Certificate) -> bool {
    let point = issuer
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes();
    assert_eq!(point[0], 0x04, "uncompressed SM2 point");
    gmssl_sm2_verifies(&point[1..], signature_der, true, tbs_der)
}

/// Whether `gmssl` accepts `signature` (DER if `asn1`, else r‖s) over
/// `message` by the SM2 key whose point is `x‖y`, with the default user ID.
pub fn gmssl_sm2_verifies(xy: &[u8], signature: &[u8], asn1: bool, message: &[u8]) -> bool {
    // The key is set after construction: gmssl 3.2.2's constructor strips a
    // leading "04" with `lstrip("04")`, which also eats the x coordinate's
    // leading 0 and 4 digits (one key in 256), and then every signature by
    // that key fails inside its point arithmetic.
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys\nfrom gmssl import sm2\n\
             c = sm2.CryptSM2(private_key=None, public_key='', asn1=sys.argv[4] == 'asn1')\n\
             c.public_key = sys.argv[1]\n\
             print(c.verify_with_sm3(sys.argv[2], bytes.fromhex(sys.argv[3])))",
            &hex::encode(xy),
            &hex::encode(signature),
            &hex::encode(message),
            if asn1 { "asn1" } else { "raw" },
        ])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "gmssl failed (pip install gmssl): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim() == "True"
}

/// libfaketime, which moves the clock of the programs it is loaded into
/// (`apt-get install faketime`).
pub fn libfaketime() -> String {
    std::fs::read_dir("/usr/lib")
        .unwrap()
        .filter_map(Result::ok)
        .map(|arch| arch.path().join("faketime/libfaketime.so.1"))
        .find(|p| p.exists())
        .map(|p| path_str(&p))
        .expect("libfaketime (apt-get install faketime)")
}

/// `cmd` with its clock read from `offset_file` (libfaketime's "+Nd" form,
/// re-read at every clock reading), the monotonic clock moved with it.
pub fn at_faked_time<'a>(cmd: &'a mut Command, offset_file: &str) -> &'a mut Command {
    cmd.env("LD_PRELOAD", libfaketime())
        .env("FAKETIME_TIMESTAMP_FILE", offset_file)
        .env("FAKETIME_NO_CACHE", "1")
}

/// Moves the faked clock of the processes reading `offset_file` to
/// `offset` (libfaketime's "+Nd" form). The file is replaced whole, by a
/// rename: a server thread reading it while it was rewritten in place could
/// find it empty and take the true time for that reading.
pub fn set_faked_clock(offset_file: &str, offset: &str) {
    let staged = format!("{offset_file}.next");
    std::fs::write(&staged, format!("{}\n", offset.trim_end())).unwrap();
    std::fs::rename(&staged, offset_file).unwrap();
}

pub const P12_PASSWORD: &str = "officer-secret-1";

/// An initialized data directory in a temporary directory.
pub struct Ca {
    pub _tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub data: PathBuf,
    pub http: u16,
    pub https: u16,
}

impl Ca {
    pub fn init(extra: &[&str]) -> Self {
        Self::init_with_env(extra, &[])
    }

    /// [`Ca::init`] with configuration from `env` (`KEXIN_…` variables).
    pub fn init_with_env(extra: &[&str], env: &[(&str, &str)]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let (http, https) = (free_port(), free_port());
        run_ok(
            kexin(tmp.path())
                .args(["init", "--data", "data"])
                .args(extra)
                .envs(env.iter().copied())
                .env("KEXIN_HTTP__LISTEN", format!("127.0.0.1:{http}")),
        );
        Self {
            dir: tmp.path().to_owned(),
            data: data_dir(tmp.path()),
            _tmp: tmp,
            http,
            https,
        }
    }

    pub fn file(&self, name: &str) -> String {
        path_str(&self.dir.join(name))
    }

    pub fn ca_pem(&self, name: &str) -> String {
        path_str(&self.data.join(format!("ca/{name}.pem")))
    }

    pub fn kexin(&self, args: &[&str]) -> std::process::Output {
        kexin(&self.dir)
            .args(args)
            .args(["--data", "data"])
            .output()
            .unwrap()
    }

    /// [`Ca::kexin`] at `offset` (libfaketime's "+Nd"): its exit status
    /// and what it printed. Only the wall clock is moved: the command
    /// starts at once, and a monotonic leap in its first readings would
    /// stall it.
    pub fn kexin_at(&self, offset: &str, args: &[&str]) -> (bool, String) {
        let clock = self.file(&format!("clock-{offset}"));
        set_faked_clock(&clock, offset);
        let mut cmd = kexin(&self.dir);
        at_faked_time(&mut cmd, &clock)
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            .args(args)
            .args(["--data", "data"]);
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }

    /// Asserts that `kexin audit verify` finds the audit chain intact.
    pub fn assert_audit_intact(&self) {
        let out = self.kexin(&["audit", "verify"]);
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Revokes a certificate with `kexin cert revoke`, which must succeed.
    pub fn revoke(&self, serial: &str, reason: &str) {
        let out = self.kexin(&["cert", "revoke", "--serial", serial, "--reason", reason]);
        assert!(
            out.status.success(),
            "kexin cert revoke: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn serve(&self) -> Server {
        serve_data(&self.dir, self.http, self.https)
    }

    /// A second node of the same instance (same data directory and
    /// database), on ports of its own; and its HTTPS port.
    pub fn serve_another_node(&self) -> (Server, u16) {
        let (http, https) = (free_port(), free_port());
        (serve_data(&self.dir, http, https), https)
    }

    /// A CSR from `openssl req` with a key of `key_args`.
    pub fn csr(&self, name: &str, key_args: &[&str], subject: &str, san: Option<&str>) -> String {
        let (key, csr) = (
            self.file(&format!("{name}.key")),
            self.file(&format!("{name}.csr")),
        );
        let mut args = vec![
            "req", "-new", "-utf8", "-nodes", "-keyout", &key, "-out", &csr, "-subj", subject,
        ];
        args.extend_from_slice(key_args);
        let san_arg;
        if let Some(san) = san {
            san_arg = format!("subjectAltName={san}");
            args.extend(["-addext", &san_arg]);
        }
        let (ok, out) = openssl(&args);
        assert!(ok, "{out}");
        csr
    }

    /// Issues through the CLI; returns (PEM path, serial).
    pub fn issue(&self, name: &str, profile: &str, csr: &str) -> (String, String) {
        let pem = self.file(&format!("{name}.pem"));
        let out = self.kexin(&[
            "cert",
            "issue",
            "--profile",
            profile,
            "--csr",
            csr,
            "--out",
            &pem,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (pem.clone(), serial_of(&pem))
    }

    pub fn officer(&self, name: &str, role: &str) -> String {
        let p12 = self.file(&format!("{name}.p12"));
        let out = kexin(&self.dir)
            .args([
                "officer", "add", "--data", "data", "--name", name, "--role", role, "--out", &p12,
            ])
            .env("KEXIN_P12_PASSWORD", P12_PASSWORD)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        p12
    }
}

pub fn serial_of(pem: &str) -> String {
    let (ok, out) = openssl(&["x509", "-in", pem, "-noout", "-serial"]);
    assert!(ok, "{out}");
    out.trim()
        .trim_start_matches("serial=")
        .to_ascii_lowercase()
}

/// [`curl`] to `url` trusting our root, as the officer of `p12` if given,
/// with `extra` options before the URL.
pub fn curl_as(ca: &Ca, p12: Option<&str>, extra: &[&str], url: &str) -> (u16, Vec<u8>) {
    let root = ca.ca_pem("root");
    let cert = p12.map(|p| format!("{p}:{P12_PASSWORD}"));
    let mut args = vec!["--cacert", root.as_str()];
    if let Some(cert) = &cert {
        args.extend(["--cert-type", "P12", "--cert", cert]);
    }
    args.extend_from_slice(extra);
    args.push(url);
    curl(&args)
}

/// A console request to the node listening on `port`, as the officer of
/// `p12`, keeping cookies in `jar` and sending the console's own origin,
/// as a browser does with its forms; the status and the page.
pub fn console_at(
    ca: &Ca,
    port: u16,
    p12: &str,
    jar: &str,
    extra: &[&str],
    path: &str,
) -> (u16, String) {
    let origin = format!("Origin: https://localhost:{port}");
    let mut args = vec!["-b", jar, "-c", jar, "-H", &origin];
    args.extend_from_slice(extra);
    let url = format!("https://localhost:{port}{path}");
    let (code, body) = curl_as(ca, Some(p12), &args, &url);
    (code, String::from_utf8_lossy(&body).into_owned())
}

/// Calls the HTTPS API with curl, as the officer of `p12` if given.
pub fn api(
    ca: &Ca,
    p12: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut args = vec!["-X", method];
    if let Some(b) = body {
        args.extend(["-H", "Content-Type: application/json", "--data-binary", b]);
    }
    let url = format!("https://localhost:{}{path}", ca.https);
    let (code, body) = curl_as(ca, p12, &args, &url);
    let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    (code, json)
}

/// A plain PDF 1.4 with `pages` pages and a classic xref table.
pub fn make_pdf(path: &str, pages: usize) {
    make_padded_pdf(path, pages, 0);
}

/// [`make_pdf`] with an unused stream of `padding` bytes, for a document
/// of a given size.
pub fn make_padded_pdf(path: &str, pages: usize, padding: usize) {
    let mut objects: Vec<Vec<u8>> = vec![b"<< /Type /Catalog /Pages 2 0 R >>".to_vec()];
    let kids: Vec<String> = (0..pages).map(|i| format!("{} 0 R", 3 + 2 * i)).collect();
    objects.push(
        format!(
            "<< /Type /Pages /Kids [{}] /Count {pages} >>",
            kids.join(" ")
        )
        .into_bytes(),
    );
    let font = 3 + 2 * pages;
    for i in 0..pages {
        objects.push(
            format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents {} 0 R /Resources << /Font << /F1 {font} 0 R >> >> >>",
                4 + 2 * i
            )
            .into_bytes(),
        );
        let content = format!(
            "BT /F1 24 Tf 72 760 Td (Kexin test document, page {}) Tj ET",
            i + 1
        );
        objects.push(
            format!(
                "<< /Length {} >>\nstream\n{content}\nendstream",
                content.len()
            )
            .into_bytes(),
        );
    }
    objects.push(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_vec());
    if padding > 0 {
        let mut stream = format!("<< /Length {padding} >>\nstream\n").into_bytes();
        stream.extend((0..padding).map(|i| (i * 7 % 251) as u8));
        stream.extend_from_slice(b"\nendstream");
        objects.push(stream);
    }
    let mut out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        out.extend_from_slice(o);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for o in offsets {
        out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    std::fs::write(path, out).unwrap();
}

/// A small PNG for a seal image, rendered by poppler from a one-page PDF.
pub fn seal_image(ca: &Ca) -> String {
    let pdf = ca.file("seal-image.pdf");
    make_pdf(&pdf, 1);
    let base = ca.file("seal-image");
    let out = Command::new("pdftoppm")
        .args(["-png", "-singlefile", "-scale-to", "96", &pdf, &base])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    format!("{base}.png")
}
