//! Authorization codes between the sign-in and the token request.
//!
//! A code lives 60 seconds. It is stored under a key made of its issue
//! time and its hash, never the code itself: any node redeems a code any
//! node issued, and a restart loses none. A code issued at a sign-in is
//! inserted in the transaction of the sign-in's audit entry, beside its
//! session; one issued from a live session is inserted on its own.
//! Redemption deletes the code in the transaction that stores the refresh
//! token it gives ([`crate::refresh`]), whatever the outcome, so a
//! replayed code finds nothing; logout deletes the codes of its session.

use std::time::Duration;

use kexin_ca::storage::rows::{NewRow, SqlValue};

use crate::{now, time_ordered_key, time_ordered_token, Error};

/// How long a code may be redeemed.
pub const CODE_TTL: Duration = Duration::from_secs(60);

/// What a code was issued for: checked and used when it is redeemed.
#[derive(Clone, Debug, PartialEq)]
pub struct PendingCode {
    pub client_id: String,
    pub redirect_uri: String,
    /// The PKCE S256 challenge.
    pub code_challenge: String,
    pub nonce: Option<String>,
    pub scope: String,
    pub subject: String,
    pub claims: serde_json::Value,
    /// The [`crate::provider::sid`] of the SSO session.
    pub session: String,
}

const INSERT_CODE: &str = "INSERT INTO oidc_codes \
     (code_key, client_id, redirect_uri, code_challenge, nonce, scope, subject, claims, sid, expires_at)";

/// The columns a redemption reads back, in [`pending_from`]'s order.
pub(crate) const CODE_COLUMNS: &str =
    "code_key, client_id, redirect_uri, code_challenge, nonce, scope, subject, claims, sid, expires_at";

/// A new code for `pending`: the code, and the row that stores it.
pub fn new_code(pending: &PendingCode) -> Result<(String, NewRow), Error> {
    let code = time_ordered_token()?;
    let text = |s: &str| SqlValue::Text(s.to_owned());
    let row = NewRow {
        insert: INSERT_CODE,
        values: vec![
            SqlValue::Text(code_key(&code)),
            text(&pending.client_id),
            text(&pending.redirect_uri),
            text(&pending.code_challenge),
            pending.nonce.as_deref().map_or(SqlValue::Null, text),
            text(&pending.scope),
            text(&pending.subject),
            SqlValue::Text(pending.claims.to_string()),
            text(&pending.session),
            SqlValue::Integer(now() + CODE_TTL.as_secs() as i64),
        ],
    };
    Ok((code, row))
}

/// Where a code is stored.
pub fn code_key(code: &str) -> String {
    time_ordered_key(code)
}

/// A stored code's row as read back: its key, what it was issued for,
/// and when it expires.
pub(crate) struct StoredCode {
    pub key: String,
    pub pending: PendingCode,
    pub expires_at: i64,
}

/// Builds a [`StoredCode`] from the [`CODE_COLUMNS`] of a row, each read
/// by `text`, `optional` or `integer` at its index.
pub(crate) fn pending_from<E>(
    text: impl Fn(usize) -> Result<String, E>,
    optional: impl Fn(usize) -> Result<Option<String>, E>,
    integer: impl Fn(usize) -> Result<i64, E>,
) -> Result<StoredCode, E> {
    Ok(StoredCode {
        key: text(0)?,
        pending: PendingCode {
            client_id: text(1)?,
            redirect_uri: text(2)?,
            code_challenge: text(3)?,
            nonce: optional(4)?,
            scope: text(5)?,
            subject: text(6)?,
            claims: serde_json::from_str(&text(7)?).unwrap_or_default(),
            session: text(8)?,
        },
        expires_at: integer(9)?,
    })
}
