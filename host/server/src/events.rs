//! Events in. CloudEvents: the HTTP binding's structured and binary modes, read into the
//! `cloudevents-sdk` event type (which checks the required attributes), then handed to the
//! service layer as `trigger.event` (`id`, `source`, `type`, `subject`, `time`, `data`).
//! Webhooks: `POST /hooks/NAME`, authenticated by their HMAC signature rather than a token
//! (the service layer checks it against the rule's secret).

use axum::http::{HeaderMap, StatusCode, header};
use cloudevents::{AttributesReader as _, Data, EventBuilder as _, EventBuilderV10};
use serde_json::{Value, json};

use crate::problem::Problem;

/// The event a request carries, as the rules' templates see it.
pub(crate) fn read(headers: &HeaderMap, body: &[u8]) -> Result<Value, Problem> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bad = |why: String| Problem::new(StatusCode::BAD_REQUEST, why);
    let event: cloudevents::Event = if content_type.starts_with("application/cloudevents+json") {
        serde_json::from_slice(body)
            .map_err(|e| bad(format!("not a CloudEvent in structured mode: {e}")))?
    } else if content_type.starts_with("application/cloudevents-batch+json") {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "batches of CloudEvents are not supported yet: post each event on its own",
        ));
    } else if headers.contains_key("ce-specversion") {
        let h = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        if h("ce-specversion").as_deref() != Some("1.0") {
            return Err(bad(
                "ce-specversion must be 1.0: sluice reads CloudEvents 1.0".into(),
            ));
        }
        let missing = ["ce-id", "ce-source", "ce-type"]
            .into_iter()
            .filter(|n| h(n).is_none())
            .collect::<Vec<_>>();
        if !missing.is_empty() {
            return Err(bad(format!(
                "a CloudEvent in binary mode needs the headers {}",
                missing.join(", ")
            )));
        }
        let mut b = EventBuilderV10::new()
            .id(h("ce-id").unwrap_or_default())
            .source(h("ce-source").unwrap_or_default())
            .ty(h("ce-type").unwrap_or_default());
        if let Some(s) = h("ce-subject") {
            b = b.subject(s);
        }
        if let Some(t) = h("ce-time") {
            b = b.time(t);
        }
        if !body.is_empty() {
            let ct = if content_type.is_empty() {
                "application/json".to_string()
            } else {
                content_type.clone()
            };
            b = b.data(ct, body.to_vec());
        }
        b.build()
            .map_err(|e| bad(format!("not a CloudEvent in binary mode: {e}")))?
    } else {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send a CloudEvent: structured (Content-Type: application/cloudevents+json) or binary (ce-specversion, ce-id, ce-source and ce-type headers)",
        ));
    };
    let json_data = event
        .datacontenttype()
        .is_none_or(|t| t.starts_with("application/json") || t.ends_with("+json"));
    let data = match event.data() {
        None => Value::Null,
        Some(Data::Json(v)) => v.clone(),
        Some(Data::String(s)) if json_data => {
            serde_json::from_str(s).unwrap_or(Value::String(s.clone()))
        }
        Some(Data::String(s)) => Value::String(s.clone()),
        Some(Data::Binary(b)) if json_data => serde_json::from_slice(b).map_err(|e| {
            bad(format!(
                "the event's data is not the JSON it says it is: {e}"
            ))
        })?,
        Some(Data::Binary(b)) => Value::String(String::from_utf8_lossy(b).into_owned()),
    };
    Ok(json!({
        "id": event.id(),
        "source": event.source().to_string(),
        "type": event.ty(),
        "subject": event.subject(),
        "time": event.time().map(|t| t.to_rfc3339()),
        "data": data,
    }))
}

/// `POST /hooks/NAME`: a signed webhook (GitHub's headers) starts the rules of `--rules` whose
/// `on: webhook` has this name, each once per delivery. `202 {"started", "not_started"}`.
pub(crate) async fn hook(
    axum::extract::State(server): axum::extract::State<std::sync::Arc<crate::Server>>,
    axum::extract::Path(name): axum::extract::Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<axum::response::Response, Problem> {
    use axum::response::IntoResponse as _;
    let Some(dir) = server.config.rules.clone() else {
        return Err(Problem::new(
            StatusCode::NOT_FOUND,
            "this server knows no rules: start it with `sluice server --rules DIR`",
        ));
    };
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let delivery = sluice_app::HookDelivery {
        name: &name,
        signature: h("x-hub-signature-256"),
        delivery: h("x-github-delivery").or_else(|| h("x-delivery-id")),
        event: h("x-github-event"),
        body: &body,
    };
    let mut started = Vec::new();
    let mut already = 0;
    for start in server.app.webhook_starts(&dir, delivery).await? {
        match crate::start_triggered(&server, start).await? {
            Some(id) => started.push(id),
            None => already += 1,
        }
    }
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({ "started": started, "not_started": already })),
    )
        .into_response())
}
