//! The rule for client ids: chosen by clients, checked by the server in
//! the handshake and by a client before it asks for one.

/// Client ids are chosen by clients; keep them printable and short.
pub fn check_client_id(id: &str) -> std::result::Result<(), String> {
    if id.is_empty() || id.len() > 128 {
        return Err(format!(
            "client id must be 1 to 128 bytes, got {}",
            id.len()
        ));
    }
    if id.chars().any(char::is_control) {
        return Err("client id contains control characters".into());
    }
    Ok(())
}
