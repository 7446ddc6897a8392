//! Kexin's configuration: one typed struct, read from `kexin.toml` in the
//! data directory and overridden by `KEXIN_<SECTION>__<KEY>` environment
//! variables (double underscore between levels, e.g. `KEXIN_HTTP__LISTEN`).
//!
//! Every field has a default that works on a laptop, so an empty file is a
//! valid configuration. Unknown keys are errors: a typo must not silently
//! fall back to a default. Secrets never live here; [`secret`] reads them
//! from the environment or from a file.
#![forbid(unsafe_code)]

mod network;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

pub use network::IpNetwork;

/// Name of the configuration file inside the data directory.
pub const CONFIG_FILE: &str = "kexin.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or an override does not fit the schema; the message names
    /// the key and where its value came from.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error("secret {name}: {reason}")]
    Secret { name: String, reason: String },
    #[error("writing configuration {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub database: DatabaseConfig,
    pub keystore: KeyStoreConfig,
    pub http: HttpConfig,
    pub https: HttpsConfig,
    pub ca: CaConfig,
    pub tsa: TsaConfig,
    pub acme: AcmeConfig,
    pub oidc: OidcConfig,
    pub log: LogConfig,
}

/// The OpenID Connect provider's tokens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OidcConfig {
    /// How long an access token (and an ID token) is good for, 30 to 3600
    /// seconds. Shorter ends a revoked or logged-out session's tokens
    /// sooner; relying systems renew theirs with the refresh token.
    pub access_token_lifetime_secs: u32,
    /// An official's single sign-on session unused this long ends, 60
    /// seconds to a day; the next system asks the official to sign in.
    pub session_idle_secs: u32,
    /// And this long after sign-in in any case: from the idle time to 30
    /// days. The session cookie lives as long.
    pub session_absolute_secs: u32,
}

impl Default for OidcConfig {
    fn default() -> Self {
        Self {
            access_token_lifetime_secs: 300,
            session_idle_secs: 30 * 60,
            session_absolute_secs: 10 * 3600,
        }
    }
}

/// The ACME server (RFC 8555) at `/acme/directory`, for systems that renew
/// their TLS certificates themselves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AcmeConfig {
    /// The profile ACME certificates are issued under (its first issuer
    /// signs); it must need no more than one approval.
    pub profile: String,
    /// The port http-01 challenges are fetched from: 80, as RFC 8555
    /// fixes it, except where a test or a port-mapping gateway says
    /// otherwise.
    pub http01_port: u16,
    /// Whether orders may name `localhost` and names under it (fetched
    /// from the loopback address, RFC 6761): for tests and demonstrations
    /// on one machine, never for a CA that others rely on.
    pub allow_localhost_names: bool,
    /// Whether a new account must be bound to a key the RA issued
    /// (`kexin acme eab`); without it, anyone who reaches the endpoint and
    /// controls a name may open an account and order it.
    pub external_account_required: bool,
    /// Orders one account may open in an hour; past it, `rateLimited`. A
    /// renewal is one order, so this only stops a client gone wrong.
    pub orders_per_hour: u32,
}

impl Default for AcmeConfig {
    fn default() -> Self {
        Self {
            profile: "tls-server".into(),
            http01_port: 80,
            allow_localhost_names: false,
            external_account_required: true,
            orders_per_hour: 300,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TsaConfig {
    /// Policy OID of every token; ETSI EN 319 421's best-practices policy by default.
    pub policy: String,
    /// Further policy OIDs a request may ask for.
    pub accepted_policies: Vec<String>,
    /// Stated accuracy of genTime, in seconds.
    pub accuracy_seconds: u64,
    /// A file whose presence says the system clock is synchronised (e.g.
    /// `/run/systemd/timesync/synchronized`); unset trusts the clock as long
    /// as it does not step.
    pub require_sync_file: Option<PathBuf>,
}

impl Default for TsaConfig {
    fn default() -> Self {
        Self {
            policy: "0.4.0.2023.1.1".into(),
            accepted_policies: Vec::new(),
            accuracy_seconds: 1,
            require_sync_file: None,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://…` or `postgres://…`; unset means `kexin.db` in the data directory.
    pub url: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStoreBackend {
    #[default]
    Soft,
    Pkcs11,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeyStoreConfig {
    pub backend: KeyStoreBackend,
    /// Where the soft store's passphrase is kept when neither
    /// `KEXIN_KEYSTORE_PASSPHRASE` nor `KEXIN_KEYSTORE_PASSPHRASE_FILE` is set.
    /// Relative paths are relative to the data directory. The file must be 0600.
    pub passphrase_file: Option<PathBuf>,
    pub pkcs11: Pkcs11Config,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pkcs11Config {
    pub module: PathBuf,
    pub token_label: String,
    /// Upper bound on open sessions, and so on concurrent signers.
    pub max_sessions: usize,
}

impl Default for Pkcs11Config {
    fn default() -> Self {
        Self {
            module: "/usr/lib/softhsm/libsofthsm2.so".into(),
            token_label: "kexin".into(),
            max_sessions: 16,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Plain HTTP: the public PKI repository, OCSP and TSA.
    pub listen: SocketAddr,
    /// Base URL that certificates point at (AIA, CDP, OCSP).
    pub public_url: String,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Threads serving this listener, each with a socket of its own on
    /// the same address; default one per CPU.
    pub threads: Option<usize>,
    /// Load balancers and proxies (CIDR) whose connections begin with a
    /// PROXY protocol header (v1 or v2) naming the client; see
    /// [`HttpsConfig::proxy_protocol_from`].
    pub proxy_protocol_from: Vec<IpNetwork>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: "http://127.0.0.1:8080".into(),
            max_body_bytes: 64 * 1024,
            threads: None,
            proxy_protocol_from: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpsConfig {
    pub listen: SocketAddr,
    /// DNS names and IP addresses the server certificate covers; a change
    /// has it issued afresh (same key) at the next start, if Kexin made it.
    pub names: Vec<String>,
    /// Key store label of the server key (set by `kexin init`).
    pub key_label: Option<String>,
    /// PEM chain presented by the server, leaf first; relative to the data directory.
    pub chain_file: PathBuf,
    /// The HTTPS base URL as citizens reach it (the verify portal, the
    /// links in e-license QR codes); default `https://{names[0]}:{port}`.
    pub public_url: Option<String>,
    /// Load balancers and proxies (CIDR, e.g. `10.0.0.0/8`) in front of
    /// this listener that pass TCP through and announce each client with a
    /// PROXY protocol header (v1 or v2, as HAProxy, nginx's stream module
    /// and cloud network load balancers send it). A connection from one of
    /// them must begin with the header, and the address it names is the
    /// client's for everything (audit entries, rate limits, the token
    /// log); a connection without one is closed. Connections from anywhere
    /// else are served as they come. Empty by default.
    pub proxy_protocol_from: Vec<IpNetwork>,
}

impl HttpsConfig {
    pub fn public_base(&self) -> String {
        match &self.public_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => format!(
                "https://{}:{}",
                self.names
                    .first()
                    .map(String::as_str)
                    .unwrap_or("localhost"),
                self.listen.port()
            ),
        }
    }
}

impl Default for HttpsConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            names: vec!["localhost".into(), "127.0.0.1".into()],
            key_label: None,
            chain_file: "tls/server-chain.pem".into(),
            public_url: None,
            proxy_protocol_from: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaConfig {
    /// Key algorithm of the CA hierarchy made by `kexin init`.
    pub algorithm: String,
    /// Subject attributes shared by the CA certificates.
    pub country: String,
    pub organization: String,
    pub root_validity_days: u32,
    pub issuing_validity_days: u32,
    /// DNS subtrees the `systems` CA may certify (name constraints); empty
    /// leaves it unconstrained.
    pub systems_permitted_dns: Vec<String>,
    /// Hours from a CRL's thisUpdate to its nextUpdate; a new CRL is made
    /// every time a certificate is revoked and when half of this has passed.
    pub crl_validity_hours: u32,
    /// Seconds between a server's checks of the certificates and keys it
    /// runs on: it renews its service certificates (OCSP responders, TSA,
    /// HTTPS) when due, serves CA certificates that `kexin ca renew`
    /// renewed, and publishes SSO token keys that `kexin oidc rotate-key`
    /// made, on whichever node either ran.
    pub certificate_check_secs: u32,
}

impl Default for CaConfig {
    fn default() -> Self {
        Self {
            algorithm: "ecdsa-p256".into(),
            country: "CN".into(),
            organization: "Kexin Trust Service".into(),
            root_validity_days: 20 * 365,
            issuing_validity_days: 10 * 365,
            systems_permitted_dns: Vec::new(),
            crl_validity_hours: 48,
            certificate_check_secs: 60,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `kexin=debug,info`; `RUST_LOG` wins.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            filter: "info".into(),
        }
    }
}

impl Config {
    /// Reads `kexin.toml` from `data_dir` (absent means all defaults) and
    /// applies `KEXIN_*__*` environment overrides.
    pub fn load(data_dir: &Path) -> Result<Self, ConfigError> {
        Self::load_with_env(data_dir, std::env::vars())
    }

    /// [`Config::load`] with the environment given explicitly.
    pub fn load_with_env(
        data_dir: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let overrides = EnvOverrides(
            env.into_iter()
                .filter_map(|(k, v)| {
                    let rest = k.strip_prefix("KEXIN_")?;
                    rest.contains("__")
                        .then(|| (rest.to_ascii_lowercase().replace("__", "."), v))
                })
                .collect(),
        );
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        let file = data_dir.join(CONFIG_FILE);
        if file.exists() {
            figment = figment.merge(Toml::file_exact(file));
        }
        let config: Self = figment
            .merge(overrides)
            .extract()
            .map_err(|e| ConfigError::Invalid(describe(e)))?;
        if !(30..=3600).contains(&config.oidc.access_token_lifetime_secs) {
            return Err(ConfigError::Invalid(format!(
                "key `oidc.access_token_lifetime_secs`: {} is not 30 to 3600 seconds",
                config.oidc.access_token_lifetime_secs
            )));
        }
        let (idle, absolute) = (
            config.oidc.session_idle_secs,
            config.oidc.session_absolute_secs,
        );
        if !(60..=86_400).contains(&idle) {
            return Err(ConfigError::Invalid(format!(
                "key `oidc.session_idle_secs`: {idle} is not 60 to 86400 seconds"
            )));
        }
        if !(idle..=30 * 86_400).contains(&absolute) {
            return Err(ConfigError::Invalid(format!(
                "key `oidc.session_absolute_secs`: {absolute} is not from the idle time ({idle}) to 2592000 seconds (30 days)"
            )));
        }
        Ok(config)
    }

    /// Writes the configuration as `kexin.toml` in `data_dir`.
    pub fn write(&self, data_dir: &Path) -> Result<(), ConfigError> {
        let path = data_dir.join(CONFIG_FILE);
        let text = toml::to_string_pretty(self).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let header = "# Kexin configuration. Every key is optional; environment variables\n\
                      # KEXIN_<SECTION>__<KEY> override it (e.g. KEXIN_HTTP__LISTEN).\n\n";
        std::fs::write(&path, format!("{header}{text}"))
            .map_err(|source| ConfigError::Write { path, source })
    }
}

/// `KEXIN_<SECTION>__<KEY>` variables as a figment provider. Values parse
/// the way figment parses environment values (numbers, booleans, arrays).
struct EnvOverrides(Vec<(String, String)>);

impl figment::Provider for EnvOverrides {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named("environment variable KEXIN_<SECTION>__<KEY>")
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        let mut dict = figment::value::Dict::new();
        for (key, raw) in &self.0 {
            let value: figment::value::Value =
                raw.parse().expect("figment values parse infallibly");
            let nested = figment::util::nest(key, value);
            if let figment::value::Value::Dict(_, d) = nested {
                dict = merge_dicts(dict, d);
            }
        }
        Ok(figment::Profile::Default.collect(dict))
    }
}

fn merge_dicts(mut a: figment::value::Dict, b: figment::value::Dict) -> figment::value::Dict {
    use figment::value::Value;
    for (k, v) in b {
        let merged = match (a.remove(&k), v) {
            (Some(Value::Dict(_, x)), Value::Dict(tag, y)) => Value::Dict(tag, merge_dicts(x, y)),
            (_, v) => v,
        };
        a.insert(k, merged);
    }
    a
}

fn describe(e: figment::Error) -> String {
    e.into_iter()
        .map(|e| {
            let key = if e.path.is_empty() {
                String::from("(top level)")
            } else {
                e.path.join(".")
            };
            let from = e
                .metadata
                .as_ref()
                .and_then(|m| m.source.as_ref().map(|s| format!(" (from {s})")))
                .or_else(|| e.metadata.as_ref().map(|m| format!(" (from {})", m.name)))
                .unwrap_or_default();
            format!("key `{key}`{from}: {}", e.kind)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Reads the secret `name` from the environment variable `name`, or from
/// the file named by `name_FILE`, or from `fallback_file`. Files must not be
/// readable by group or others. Trailing newlines are dropped.
pub fn secret(
    name: &str,
    fallback_file: Option<&Path>,
) -> Result<Option<Zeroizing<String>>, ConfigError> {
    if let Ok(v) = std::env::var(name) {
        return Ok(Some(Zeroizing::new(v)));
    }
    let file_var = format!("{name}_FILE");
    let path = match std::env::var_os(&file_var) {
        Some(p) => PathBuf::from(p),
        None => match fallback_file {
            Some(p) => p.to_owned(),
            None => return Ok(None),
        },
    };
    let fail = |reason: String| ConfigError::Secret {
        name: name.to_owned(),
        reason,
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta =
            std::fs::metadata(&path).map_err(|e| fail(format!("{}: {e}", path.display())))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(fail(format!(
                "{} is readable by group or others; chmod 600 it",
                path.display()
            )));
        }
    }
    let text =
        std::fs::read_to_string(&path).map_err(|e| fail(format!("{}: {e}", path.display())))?;
    Ok(Some(Zeroizing::new(
        text.trim_end_matches(['\r', '\n']).to_owned(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CONFIG_FILE), toml).unwrap();
        Config::load_with_env(
            dir.path(),
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn missing_file_means_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config::load_with_env(dir.path(), []).unwrap();
        assert_eq!(cfg, Config::default());
    }

    #[test]
    fn defaults_round_trip_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::default();
        cfg.database.url = Some("postgres://localhost/test".into());
        cfg.write(dir.path()).unwrap();
        assert_eq!(Config::load_with_env(dir.path(), []).unwrap(), cfg);
    }

    #[test]
    fn bad_value_names_the_key_and_file() {
        let err = load("[http]\nlisten = \"not an address\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("http.listen"), "{err}");
        assert!(err.contains(CONFIG_FILE), "{err}");
    }

    #[test]
    fn proxy_networks_are_read_and_a_bad_one_names_its_key() {
        let cfg = load(
            "[https]\nproxy_protocol_from = [\"10.0.0.0/8\", \"2001:db8::1\"]\n",
            &[],
        )
        .unwrap();
        let proxies = &cfg.https.proxy_protocol_from;
        assert!(proxies[0].contains("10.1.2.3".parse().unwrap()));
        assert_eq!(proxies[1].to_string(), "2001:db8::1/128");
        assert!(cfg.http.proxy_protocol_from.is_empty());
        let err = load("[http]\nproxy_protocol_from = [\"10.0.0.1/8\"]\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("http.proxy_protocol_from") && err.contains("host bits"),
            "{err}"
        );
    }

    #[test]
    fn access_token_lifetimes_outside_30_to_3600_seconds_are_refused() {
        for (secs, good) in [(29, false), (30, true), (3600, true), (3601, false)] {
            let loaded = load(
                &format!("[oidc]\naccess_token_lifetime_secs = {secs}\n"),
                &[],
            );
            match loaded {
                Ok(c) => assert!(good && c.oidc.access_token_lifetime_secs == secs),
                Err(e) => assert!(
                    !good && e.to_string().contains("oidc.access_token_lifetime_secs"),
                    "{secs}: {e}"
                ),
            }
        }
    }

    #[test]
    fn sso_session_lifetimes_are_bounded_and_absolute_is_not_below_idle() {
        for (idle, absolute, refused) in [
            (59, 3600, Some("oidc.session_idle_secs")),
            (60, 60, None),
            (86_400, 86_400, None),
            (86_401, 90_000, Some("oidc.session_idle_secs")),
            (600, 599, Some("oidc.session_absolute_secs")),
            (600, 2_592_000, None),
            (600, 2_592_001, Some("oidc.session_absolute_secs")),
        ] {
            let loaded = load(
                &format!(
                    "[oidc]\nsession_idle_secs = {idle}\nsession_absolute_secs = {absolute}\n"
                ),
                &[],
            );
            match (loaded, refused) {
                (Ok(c), None) => assert_eq!(
                    (c.oidc.session_idle_secs, c.oidc.session_absolute_secs),
                    (idle, absolute)
                ),
                (Err(e), Some(key)) => assert!(e.to_string().contains(key), "{e}"),
                (other, _) => panic!("{idle}/{absolute}: {other:?}"),
            }
        }
    }

    #[test]
    fn unknown_key_is_an_error() {
        let err = load("[https]\nlisen = \"127.0.0.1:1\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("lisen"), "{err}");
    }

    #[test]
    fn environment_overrides_file() {
        let cfg = load(
            "[http]\nlisten = \"127.0.0.1:1000\"\n",
            &[
                ("KEXIN_HTTP__LISTEN", "127.0.0.1:2000"),
                ("KEXIN_KEYSTORE__PKCS11__TOKEN_LABEL", "prod"),
                ("KEXIN_KEYSTORE_PASSPHRASE", "not config"),
            ],
        )
        .unwrap();
        assert_eq!(cfg.http.listen.port(), 2000);
        assert_eq!(cfg.keystore.pkcs11.token_label, "prod");
    }

    #[test]
    fn bad_override_names_the_variable_key() {
        let err = load("", &[("KEXIN_HTTP__MAX_BODY_BYTES", "lots")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("http.max_body_bytes"), "{err}");
    }
}
