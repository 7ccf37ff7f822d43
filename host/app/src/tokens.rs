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
            chat: None,
        })
    }
}

/// The shortest password sign-in accepts.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// The longest (hashing a megabyte for every attempt would be a way to slow the server).
const MAX_PASSWORD_BYTES: usize = 1024;

/// An Argon2id hash of `password` as a PHC string, with a random salt (Argon2's default cost:
/// 19 MiB, 2 passes).
fn hash_password(password: &str) -> Result<String, AppError> {
    use argon2::password_hash::{PasswordHasher as _, SaltString};
    use ring::rand::SecureRandom as _;
    let mut salt = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| AppError::Internal("the OS gave no random bytes for a salt".into()))?;
    let salt = SaltString::encode_b64(&salt)
        .map_err(|e| AppError::Internal(format!("cannot encode a salt: {e}")))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AppError::Internal(format!("cannot hash the password: {e}")))
}

/// Whether `password` matches the PHC string `phc`.
fn verify_password(password: &str, phc: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier as _};
    PasswordHash::new(phc).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A hash nobody's password matches, checked for unknown users so that a wrong name takes as
/// long as a wrong password.
static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();

impl App {
    /// Sets `user`'s password for signing in to the job monitor (Argon2id, salted).
    pub async fn set_password(&self, user: &str, password: &str) -> Result<(), AppError> {
        check_name("user", user)?;
        if password.chars().count() < MIN_PASSWORD_CHARS || password.len() > MAX_PASSWORD_BYTES {
            return Err(AppError::Usage(format!(
                "a password has {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_BYTES} characters: choose another"
            )));
        }
        let password = password.to_string();
        let phc = tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(|e| AppError::Internal(format!("hashing failed: {e}")))??;
        self.journal
            .set_password(user, &phc, sluice_runner::now())
            .await
            .map_err(|e| self.store_error(e))
    }

    /// Removes `user`'s password: they sign in with a token only.
    pub async fn remove_password(&self, user: &str) -> Result<(), AppError> {
        if self
            .journal
            .remove_password(user)
            .await
            .map_err(|e| self.store_error(e))?
        {
            return Ok(());
        }
        Err(AppError::NotFound(format!(
            "`{user}` has no password: `sluice password set --user {user}` gives them one"
        )))
    }

    /// The actor a user name and password authenticate. A wrong name and a wrong password
    /// are refused alike, in the same time.
    pub async fn sign_in(&self, user: &str, password: &str) -> Result<Actor, AppError> {
        let refused =
            || AppError::Unauthenticated("the user name or password is wrong".to_string());
        if user.is_empty() || user.len() > 128 || password.len() > MAX_PASSWORD_BYTES {
            return Err(refused());
        }
        let stored = self
            .journal
            .password(user)
            .await
            .map_err(|e| self.store_error(e))?;
        let known = stored.is_some();
        let password = password.to_string();
        let ok = tokio::task::spawn_blocking(move || {
            let phc = match stored {
                Some(p) => p,
                None => match DECOY.get() {
                    Some(d) => d.clone(),
                    None => {
                        let d = hash_password("not anybody's password")?;
                        DECOY.get_or_init(|| d).clone()
                    }
                },
            };
            Ok::<_, AppError>(verify_password(&password, &phc))
        })
        .await
        .map_err(|e| AppError::Internal(format!("checking the password failed: {e}")))??;
        if !(ok && known) {
            return Err(refused());
        }
        Ok(Actor {
            name: user.to_string(),
            groups: Vec::new(),
            via: AuthMethod::Password,
            os_user: String::new(),
            chat: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_against_their_own_hash_only() {
        let a = hash_password("correct horse battery").unwrap();
        let b = hash_password("correct horse battery").unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "salted");
        assert!(verify_password("correct horse battery", &a));
        assert!(!verify_password("correct horse batterz", &a));
        assert!(!verify_password("correct horse battery", "not a hash"));
    }
}
