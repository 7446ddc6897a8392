//! A government system that accepts Kexin single sign-on, whole.
//!
//! KEXIN_ISSUER=https://localhost:8443 KEXIN_CLIENT_ID=… KEXIN_CLIENT_SECRET=… \
//! KEXIN_ROOT=kexin-data/ca/root.pem LISTEN=127.0.0.1:3000 SYSTEM_NAME=档案系统 \
//!   cargo run -p kexin-sdk --features postgres --example relying_system
//!
//! Registered with `kexin client add --redirect-uri {URL}/callback --redirect-uri
//! {URL}/bye --backchannel-logout-uri {URL}/backchannel-logout`, URL being
//! PUBLIC_URL (default http://{LISTEN}). `/api/me` takes its access tokens.
//! Replicas share SESSIONS_DB (postgres://…) and STATE_KEY_FILE (32+ bytes).
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{Html, Response};
use axum::routing::get;
use axum::Router;
use kexin_sdk::axum::{BearerToken, SignedIn, Sso};
use kexin_sdk::{sessions::PgSessionStore, RelyingParty};

const BYE: &str = "<meta charset=utf-8><p id=bye>已退出 Signed out";

#[derive(Clone)]
struct App {
    sso: Arc<Sso>,
    name: String,
    url: String,
}

impl axum::extract::FromRef<App> for Arc<Sso> {
    fn from_ref(app: &App) -> Self {
        app.sso.clone()
    }
}

async fn home(State(app): State<App>, who: SignedIn) -> Html<String> {
    let name = who.claims["name"].as_str().unwrap_or("?");
    Html(format!(
        "<!doctype html><meta charset=utf-8><h1 id=greeting>{} — 欢迎 {}</h1><a id=logout href=/logout>退出 Sign out</a>",
        app.name,
        name.replace('<', "&lt;")
    ))
}

async fn api_me(token: BearerToken) -> String {
    token.claims["sub"].to_string()
}

async fn login(State(app): State<App>) -> Response {
    app.sso.begin()
}

async fn callback(State(app): State<App>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    app.sso.finish(&headers, &q.unwrap_or_default(), "/").await
}

async fn logout(State(app): State<App>, headers: HeaderMap) -> Response {
    app.sso.logout(&headers, &format!("{}/bye", app.url)).await
}

async fn backchannel(State(app): State<App>, body: String) -> axum::http::StatusCode {
    app.sso.backchannel_logout(&body).await
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("set {name}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let listen = env("LISTEN");
    let url = std::env::var("PUBLIC_URL").unwrap_or_else(|_| format!("http://{listen}"));
    let (id, secret) = (env("KEXIN_CLIENT_ID"), env("KEXIN_CLIENT_SECRET"));
    let (root, redirect) = (std::fs::read(env("KEXIN_ROOT"))?, format!("{url}/callback"));
    let issuer = env("KEXIN_ISSUER");
    let rp = RelyingParty::discover(&issuer, &id, &secret, &redirect, Some(&root)).await?;
    let sso = match std::env::var("SESSIONS_DB") {
        Ok(db) => {
            let store = Arc::new(PgSessionStore::connect(&db).await?);
            Sso::shared(rp, &std::fs::read(env("STATE_KEY_FILE"))?, store)?
        }
        Err(_) => Sso::new(rp)?,
    };
    let name = std::env::var("SYSTEM_NAME").unwrap_or_else(|_| "System".into());
    let app = App { sso, name, url };
    let router = Router::new()
        .route("/", get(home))
        .route("/api/me", get(api_me))
        .route("/login", get(login))
        .route("/callback", get(callback))
        .route("/logout", get(logout))
        .route("/bye", get(|| async { Html(BYE) }))
        .route("/backchannel-logout", axum::routing::post(backchannel))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening on http://{listen}");
    axum::serve(listener, router).await?;
    Ok(())
}
