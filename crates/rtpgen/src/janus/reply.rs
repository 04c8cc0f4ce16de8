//! Reading Janus's JSON answers: the two levels of errors (Janus's own and the
//! AudioBridge's) and the fields rtpgen needs, each shape check turned into a
//! [`JanusError`] that quotes what arrived.

use std::net::{IpAddr, SocketAddr};

use serde_json::Value;

use super::{JanusError, JanusLeg};

/// How much of an unexpected body an error message quotes, in characters.
const QUOTE: usize = 200;

/// `{"janus":"error","error":{"code","reason"}}` → [`JanusError::Janus`].
pub(super) fn check_janus_error(what: &'static str, r: &Value) -> Result<(), JanusError> {
    if r["janus"] != "error" {
        return Ok(());
    }
    Err(JanusError::Janus {
        what,
        code: r["error"]["code"].as_i64().unwrap_or(-1),
        reason: r["error"]["reason"].as_str().unwrap_or("?").to_string(),
    })
}

/// The `id` of a `success` answer (session or handle).
pub(super) fn success_id(what: &'static str, r: &Value) -> Result<u64, JanusError> {
    check_janus_error(what, r)?;
    match (&r["janus"], r["data"]["id"].as_u64()) {
        (j, Some(id)) if j == "success" => Ok(id),
        _ => Err(unexpected(what, r)),
    }
}

/// `plugindata.data` of a plugin answer, with AudioBridge errors mapped.
pub(super) fn plugin_data<'a>(what: &'static str, r: &'a Value) -> Result<&'a Value, JanusError> {
    let data = &r["plugindata"]["data"];
    if !data.is_object() {
        return Err(unexpected(what, r));
    }
    if let Some(code) = data["error_code"].as_i64() {
        return Err(JanusError::Plugin {
            what,
            code,
            reason: data["error"].as_str().unwrap_or("?").to_string(),
        });
    }
    Ok(data)
}

pub(super) fn parse_joined(
    what: &'static str,
    handle: u64,
    room: u64,
    data: &Value,
) -> Result<JanusLeg, JanusError> {
    let rtp = &data["rtp"];
    let ip = rtp["ip"].as_str().and_then(|s| s.parse::<IpAddr>().ok());
    let port = rtp["port"].as_u64().and_then(|p| u16::try_from(p).ok());
    let pt = rtp["payload_type"].as_u64().filter(|&p| p < 128);
    match (ip, port, pt, data["id"].as_u64()) {
        (Some(ip), Some(port), Some(pt), Some(participant)) => Ok(JanusLeg {
            handle,
            room,
            participant,
            media: SocketAddr::new(ip, port),
            payload_type: pt as u8,
        }),
        _ => Err(JanusError::Unexpected {
            what,
            detail: format!(
                "joined event without a usable rtp/id: {}",
                quote(&data.to_string())
            ),
        }),
    }
}

pub(super) fn unexpected(what: &'static str, r: &Value) -> JanusError {
    JanusError::Unexpected {
        what,
        detail: quote(&r.to_string()),
    }
}

pub(super) fn quote(s: &str) -> String {
    match s.char_indices().nth(QUOTE) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_joined_event_gives_the_media_address_payload_type_and_participant() {
        let data = json!({"audiobridge": "joined", "id": 9,
                          "rtp": {"ip": "127.0.0.1", "port": 40010, "payload_type": 8}});
        let leg = parse_joined("t", 3, 5, &data).unwrap();
        assert_eq!(leg.media, "127.0.0.1:40010".parse().unwrap());
        assert_eq!(
            (leg.handle, leg.room, leg.participant, leg.payload_type),
            (3, 5, 9, 8)
        );
    }

    #[test]
    fn joined_events_with_unusable_fields_are_refused() {
        let rows = [
            json!({"id": 9, "rtp": {"ip": "127.0.0.1", "port": 70000, "payload_type": 0}}),
            json!({"id": 9, "rtp": {"ip": "127.0.0.1", "port": 4000, "payload_type": 128}}),
            json!({"id": 9, "rtp": {"ip": "localhost", "port": 4000, "payload_type": 0}}),
            json!({"id": 9, "rtp": {"ip": "127.0.0.1", "port": "4000", "payload_type": 0}}),
            json!({"rtp": {"ip": "127.0.0.1", "port": 4000, "payload_type": 0}}),
            json!({"id": 9}),
        ];
        for data in rows {
            let err = parse_joined("t", 3, 5, &data).unwrap_err();
            assert!(matches!(err, JanusError::Unexpected { .. }), "{data}");
        }
    }

    #[test]
    fn janus_errors_and_plugin_errors_are_told_apart() {
        let janus = json!({"janus": "error", "error": {"code": 458, "reason": "No such session"}});
        assert!(matches!(
            check_janus_error("t", &janus),
            Err(JanusError::Janus { code: 458, .. })
        ));
        let plugin = json!({"janus": "success", "plugindata": {"data":
                            {"audiobridge": "event", "error_code": 485, "error": "No such room"}}});
        assert!(check_janus_error("t", &plugin).is_ok());
        assert!(matches!(
            plugin_data("t", &plugin),
            Err(JanusError::Plugin { code: 485, .. })
        ));
        let no_data = json!({"janus": "success"});
        assert!(matches!(
            plugin_data("t", &no_data),
            Err(JanusError::Unexpected { .. })
        ));
    }

    #[test]
    fn an_id_is_read_only_from_a_success_answer() {
        assert_eq!(
            success_id("t", &json!({"janus": "success", "data": {"id": 7}})).unwrap(),
            7
        );
        for r in [
            json!({"janus": "ack", "data": {"id": 7}}),
            json!({"janus": "success", "data": {"id": -7}}),
            json!({"janus": "success"}),
        ] {
            assert!(success_id("t", &r).is_err(), "{r}");
        }
    }

    #[test]
    fn long_bodies_are_quoted_shortened_at_a_character_boundary() {
        let long = "é".repeat(QUOTE + 10);
        let q = quote(&long);
        assert_eq!(q.chars().count(), QUOTE + 1);
        assert!(q.ends_with('…'));
        assert_eq!(quote("short"), "short");
    }
}
