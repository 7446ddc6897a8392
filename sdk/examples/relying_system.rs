//! A government system that accepts Kexin single sign-on, whole.
//!
//! KEXIN_ISSUER=https://localhost:8443 KEXIN_CLIENT_ID=… KEXIN_CLIENT_SECRET=… \
//! KEXIN_ROOT=kexin-data/ca/root.pem LISTEN=127.0.0.1:3000 SYSTEM_NAME=档案系统 \
//!   cargo run -p kexin-sdk --example relying_system
//!
//! Registered with `kexin client add --redirect-uri http://{LISTEN}/callback
//! --redirect-uri http://{LISTEN}/bye --backchannel-logout-uri
//! http://{LISTEN}/backchannel-logout`. `/api/me` takes its access tokens.
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{Html, Response};
use axum::routing::get;
use axum::Router;
use kexin_sdk::axum::{session_cookie, BearerToken, SignedIn, Sso};
use kexin_sdk::RelyingParty;

#[derive(Clone)]
struct App {
    sso: Arc<Sso>,
    name: String,
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
    app.sso.logout(
        session_cookie(&headers).as_deref(),
        &format!("http://{}/bye", env("LISTEN")),
    )
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
    let rp = RelyingParty::discover(
        &env("KEXIN_ISSUER"),
        &env("KEXIN_CLIENT_ID"),
        &env("KEXIN_CLIENT_SECRET"),
        &format!("http://{listen}/callback"),
        Some(&std::fs::read(env("KEXIN_ROOT"))?),
    )
    .await?;
    let app = App {
        sso: Sso::new(rp)?,
        name: std::env::var("SYSTEM_NAME").unwrap_or_else(|_| "System".into()),
    };
    let router = Router::new()
        .route("/", get(home))
        .route("/api/me", get(api_me))
        .route("/login", get(login))
        .route("/callback", get(callback))
        .route("/logout", get(logout))
        .route(
            "/bye",
            get(|| async { Html("<meta charset=utf-8><p id=bye>已退出 Signed out") }),
        )
        .route("/backchannel-logout", axum::routing::post(backchannel))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening on http://{listen}");
    axum::serve(listener, router).await?;
    Ok(())
}
