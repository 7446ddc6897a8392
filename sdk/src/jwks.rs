//! The provider's published token keys, as a relying system caches them.
//!
//! Invariant: the JWKS is fetched at most once per [`TTL`] while tokens
//! name keys it holds, and at most once per [`FORCED_REFETCH_INTERVAL`]
//! however many tokens name keys it does not hold. A token's key id comes
//! from whoever sent the token (a back-channel logout endpoint is open to
//! anyone), so made-up key ids must not turn each request into a request
//! to the provider.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a fetched JWKS is used before it is fetched again.
const TTL: Duration = Duration::from_secs(300);

/// How old the cached JWKS must be before a token naming a key it lacks
/// (the provider rotated its keys) makes it fetched again.
const FORCED_REFETCH_INTERVAL: Duration = Duration::from_secs(30);

#[derive(Default)]
pub(crate) struct JwksCache {
    /// When the JWKS was fetched, and the JWKS.
    cached: RwLock<Option<(Instant, Arc<Value>)>>,
    /// Held while fetching: requests that find the cache stale at once
    /// share one fetch.
    fetching: tokio::sync::Mutex<()>,
}

impl JwksCache {
    /// The published key whose `kid` is `kid`, or `None` if the provider
    /// publishes none (or none that may be looked for again yet).
    pub(crate) async fn key(
        &self,
        http: &reqwest::Client,
        jwks_uri: &str,
        kid: &Value,
    ) -> Result<Option<Value>, reqwest::Error> {
        let find = |jwks: &Value| {
            jwks["keys"]
                .as_array()
                .and_then(|keys| keys.iter().find(|k| k["kid"] == *kid).cloned())
        };
        if let Some((_, jwks)) = self.current(TTL) {
            if let Some(key) = find(&jwks) {
                return Ok(Some(key));
            }
        }
        let _fetching = self.fetching.lock().await;
        // Another request may have fetched while this one waited.
        if let Some((fetched, jwks)) = self.current(TTL) {
            if let Some(key) = find(&jwks) {
                return Ok(Some(key));
            }
            if fetched.elapsed() < FORCED_REFETCH_INTERVAL {
                return Ok(None);
            }
        }
        let jwks: Value = http
            .get(jwks_uri)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let key = find(&jwks);
        *self.cached.write().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now(), Arc::new(jwks)));
        Ok(key)
    }

    /// The cached JWKS if it is younger than `ttl`.
    fn current(&self, ttl: Duration) -> Option<(Instant, Arc<Value>)> {
        self.cached
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|(fetched, _)| fetched.elapsed() < ttl)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A JWKS endpoint on loopback that counts its requests and publishes
    /// the key ids in `kids`.
    async fn provider(kids: Arc<RwLock<Vec<&'static str>>>) -> (String, Arc<AtomicUsize>) {
        let fetches = Arc::new(AtomicUsize::new(0));
        let counter = fetches.clone();
        let app = ::axum::Router::new().route(
            "/jwks",
            ::axum::routing::get(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                let keys: Vec<Value> = kids
                    .read()
                    .unwrap()
                    .iter()
                    .map(|kid| serde_json::json!({ "kid": kid, "kty": "EC" }))
                    .collect();
                async move { serde_json::json!({ "keys": keys }).to_string() }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        tokio::spawn(async move { ::axum::serve(listener, app).await });
        (url, fetches)
    }

    /// Makes the cached JWKS look `age` old.
    fn age(cache: &JwksCache, age: Duration) {
        let mut cached = cache.cached.write().unwrap();
        let (fetched, _) = cached.as_mut().unwrap();
        *fetched = Instant::now().checked_sub(age).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn made_up_key_ids_do_not_make_the_jwks_fetched_again() {
        let kids = Arc::new(RwLock::new(vec!["k1"]));
        let (url, fetches) = provider(kids.clone()).await;
        let (cache, http) = (Arc::new(JwksCache::default()), reqwest::Client::new());
        let kid = |k: &str| Value::from(k);

        let key = cache.key(&http, &url, &kid("k1")).await.unwrap();
        assert_eq!(key.unwrap()["kid"], "k1");
        assert_eq!(fetches.load(Ordering::SeqCst), 1);

        let forged = |n: usize| {
            let (cache, http, url) = (cache.clone(), http.clone(), url.clone());
            tokio::spawn(async move {
                cache
                    .key(&http, &url, &Value::from(format!("forged-{n}")))
                    .await
            })
        };
        for task in (0..50).map(forged).collect::<Vec<_>>() {
            assert_eq!(task.await.unwrap().unwrap(), None);
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1, "fresh JWKS refetched");

        // The provider rotates; once the cached JWKS is old enough, a token
        // with the new key id fetches it, once, however many arrive at once.
        kids.write().unwrap().push("k2");
        age(&cache, FORCED_REFETCH_INTERVAL);
        let rotated = |_| {
            let (cache, http, url) = (cache.clone(), http.clone(), url.clone());
            tokio::spawn(async move { cache.key(&http, &url, &Value::from("k2")).await })
        };
        for task in (0..20).map(rotated).collect::<Vec<_>>() {
            assert_eq!(task.await.unwrap().unwrap().unwrap()["kid"], "k2");
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
        for task in (50..100).map(forged).collect::<Vec<_>>() {
            assert_eq!(task.await.unwrap().unwrap(), None);
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 2, "made-up ids refetched");

        // Past its lifetime the JWKS is fetched again even for a known key.
        age(&cache, TTL);
        assert!(cache.key(&http, &url, &kid("k1")).await.unwrap().is_some());
        assert_eq!(fetches.load(Ordering::SeqCst), 3);
    }
}
