//! API tokens: made for a user (`sluice token create`), shown once, stored as a SHA-256 hash of
//! the secret, and turned back into an [`Actor`] for each request.
//!
//! A secret is `sluice_` and 64 hex digits (256 random bits from the OS), so a hash without a
//! salt or a slow function is enough: nothing can be guessed from it, and lookups by hash take
//! the same time for every wrong token.

use sha2::{Digest as _, Sha256};
use sluice_model::{Actor, AuthMethod};
use sluice_store::TokenRow;

use crate::{App, AppError};

/// A token just made: its row and, this once, its secret.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// What is stored.
    pub row: TokenRow,
    /// The secret to hand to its user; not stored, never shown again.
    pub secret: String,
}

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// `bytes` random bytes from the OS, in hex: for secrets (tokens, sessions, CSRF tokens).
pub fn random_hex(bytes: usize) -> Result<String, AppError> {
    use ring::rand::SecureRandom as _;
    let mut buf = vec![0u8; bytes];
    ring::rand::SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| AppError::Internal("the OS gave no random bytes for a token".into()))?;
    Ok(hex::encode(buf))
}

/// A user or group name as tokens accept it: not empty, no spaces, commas or control
/// characters.
fn check_name(what: &str, name: &str) -> Result<(), AppError> {
    if name.is_empty()
        || name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ',')
        || name.len() > 128
    {
        return Err(AppError::Usage(format!(
            "{what} `{}` is not a name: use at most 128 characters, without spaces, commas or control characters",
            name.escape_debug()
        )));
    }
    Ok(())
}

impl App {
    /// Makes a token authenticating `user` (with `groups` added to theirs in the permissions
    /// file), recorded as made by `by`.
    pub async fn create_token(
        &self,
        user: &str,
        groups: &[String],
        by: &Actor,
    ) -> Result<NewToken, AppError> {
        check_name("user", user)?;
        for g in groups {
            check_name("group", g)?;
        }
        let secret = format!("sluice_{}", random_hex(32)?);
        let row = TokenRow {
            id: format!("tok_{}", random_hex(6)?),
            user: user.to_string(),
            groups: groups.to_vec(),
            created_at: sluice_runner::now(),
            created_by: by.name.clone(),
            revoked_at: None,
        };
        self.journal
            .add_token(&hash(&secret), row.clone())
            .await
            .map_err(|e| self.store_error(e))?;
        Ok(NewToken { row, secret })
    }

    /// Every token, revoked ones included; never their secrets.
    pub async fn tokens(&self) -> Result<Vec<TokenRow>, AppError> {
        self.journal.tokens().await.map_err(|e| self.store_error(e))
    }

    /// Revokes token `id`: it authenticates nobody from now on.
    pub async fn revoke_token(&self, id: &str) -> Result<(), AppError> {
        if self
            .journal
            .revoke_token(id, sluice_runner::now())
            .await
            .map_err(|e| self.store_error(e))?
        {
            return Ok(());
        }
        Err(AppError::NotFound(format!(
            "no token `{id}` that is not revoked already: `sluice token list` shows them"
        )))
    }

    /// The actor a token secret authenticates.
    pub async fn authenticate(&self, secret: &str) -> Result<Actor, AppError> {
        let refused = || {
            AppError::Unauthenticated(
                "the token is unknown or revoked: ask an administrator for a new one (`sluice token create --user NAME`)".into(),
            )
        };
        if !secret.starts_with("sluice_") || secret.len() > 128 {
            return Err(refused());
        }
        let row = self
            .journal
            .token_by_hash(&hash(secret))
            .await
            .map_err(|e| self.store_error(e))?
            .ok_or_else(refused)?;
        Ok(Actor {
            name: row.user,
            groups: row.groups,
            via: AuthMethod::Token,
            os_user: String::new(),
        })
    }
}
