//! Argon2id password hashing, off the async threads.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use super::AccountError;

/// Each hash takes 19 MiB and most of a core: a flood of log-in requests must queue here
/// rather than exhaust memory.
async fn permit() -> tokio::sync::SemaphorePermit<'static> {
    static PERMITS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    let sem = PERMITS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        tokio::sync::Semaphore::new(cores * 2)
    });
    sem.acquire().await.expect("the semaphore is never closed")
}

fn hasher() -> Argon2<'static> {
    // OWASP's first recommended Argon2id setting: m = 19 MiB, t = 2, p = 1.
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid Argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

pub async fn hash(password: String) -> Result<String, AccountError> {
    let _permit = permit().await;
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        hasher()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| AccountError::Internal(format!("password hashing failed: {e}")))
    })
    .await
    .map_err(|e| AccountError::Internal(e.to_string()))?
}

pub async fn verify(password: String, hash: String) -> Result<bool, AccountError> {
    let _permit = permit().await;
    tokio::task::spawn_blocking(move || {
        let Ok(parsed) = PasswordHash::new(&hash) else { return false };
        hasher().verify_password(password.as_bytes(), &parsed).is_ok()
    })
    .await
    .map_err(|e| AccountError::Internal(e.to_string()))
}

/// Spend the same work as a real check, for log-in attempts with an unknown email.
pub async fn verify_dummy(password: String) -> Result<(), AccountError> {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let _permit = permit().await;
    tokio::task::spawn_blocking(move || {
        let hash = DUMMY.get_or_init(|| {
            let salt = SaltString::generate(&mut OsRng);
            let random = crate::crypto::random_token(24);
            hasher().hash_password(random.as_bytes(), &salt).map(|h| h.to_string()).unwrap_or_default()
        });
        if let Ok(parsed) = PasswordHash::new(hash) {
            let _ = hasher().verify_password(password.as_bytes(), &parsed);
        }
    })
    .await
    .map_err(|e| AccountError::Internal(e.to_string()))
}
