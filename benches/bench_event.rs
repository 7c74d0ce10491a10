//! The event both the engine and the apply bench govern: one ~1 KB order
//! (≈20 fields, nested objects, an array of objects, a scanned free-text
//! field with two detections).

pub fn event() -> Vec<u8> {
    let e = serde_json::json!({
        "order_id": "o-2026-11-000123",
        "created_at": "2026-11-20T09:15:00Z",
        "channel": "web",
        "customer": {
            "id": "c-1",
            "email": "ada.lovelace@example.com",
            "name": "Ada Lovelace",
            "birth_date": "1985-12-10",
            "address": {"street": "12 Analytical Engine Way", "city": "London", "postal_code": "NW1 6XE", "country": "GB"},
            "geo": {"lat": 51.523431, "lon": -0.158712},
            "health_notes": "allergic to penicillin",
            "segment": "gold"
        },
        "payment": {"card_number": "4111 1111 1111 1111", "amount": 129.90, "currency": "GBP", "method": "card"},
        "items": [
            {"sku": "BK-101", "qty": 2, "price": 19.95, "title": "Notes on the Analytical Engine"},
            {"sku": "PEN-7", "qty": 1, "price": 89.99, "title": "Fountain pen"},
            {"sku": "INK-3", "qty": 3, "price": 4.50, "title": "Ink cartridges"}
        ],
        "notes": "Please call +44 20 7946 0958 before delivery, or write to ada.lovelace@example.com; leave the parcel with the neighbour at number 14 if nobody answers the door.",
        "shipping": {"method": "express", "eta_days": 2}
    });
    serde_json::to_vec(&e).unwrap()
}

/// The same order as an Avro schema (no `classes` attributes: the policy's
/// `fields` classify it, as they do the JSON event).
#[allow(dead_code)]
pub const ORDER_SCHEMA: &str = r#"{"type": "record", "name": "Order", "namespace": "bench", "fields": [
  {"name": "order_id", "type": "string"},
  {"name": "created_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
  {"name": "channel", "type": {"type": "enum", "name": "Channel", "symbols": ["web", "store", "phone"]}},
  {"name": "customer", "type": {"type": "record", "name": "Customer", "fields": [
    {"name": "id", "type": "string"},
    {"name": "email", "type": "string"},
    {"name": "name", "type": "string"},
    {"name": "birth_date", "type": {"type": "int", "logicalType": "date"}},
    {"name": "address", "type": {"type": "record", "name": "Address", "fields": [
      {"name": "street", "type": "string"}, {"name": "city", "type": "string"},
      {"name": "postal_code", "type": "string"}, {"name": "country", "type": "string"}]}},
    {"name": "geo", "type": {"type": "record", "name": "Geo", "fields": [
      {"name": "lat", "type": "double"}, {"name": "lon", "type": "double"}]}},
    {"name": "health_notes", "type": ["null", "string"], "default": null},
    {"name": "segment", "type": "string"}]}},
  {"name": "payment", "type": {"type": "record", "name": "Payment", "fields": [
    {"name": "card_number", "type": "string"}, {"name": "amount", "type": "double"},
    {"name": "currency", "type": "string"}, {"name": "method", "type": "string"}]}},
  {"name": "items", "type": {"type": "array", "items": {"type": "record", "name": "Item", "fields": [
    {"name": "sku", "type": "string"}, {"name": "qty", "type": "int"},
    {"name": "price", "type": "double"}, {"name": "title", "type": "string"}]}}},
  {"name": "notes", "type": "string"},
  {"name": "shipping", "type": {"type": "record", "name": "Shipping", "fields": [
    {"name": "method", "type": "string"}, {"name": "eta_days", "type": "int"}]}}
]}"#;

/// The order as a Confluent wire-format Avro value (schema id 1): the JSON
/// event with `created_at` as epoch milliseconds.
#[allow(dead_code)]
pub fn avro_event(schema: &custos::avro::Schema) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(&event()).unwrap();
    v["created_at"] = serde_json::json!(1_795_166_100_000_i64);
    let mut out = Vec::new();
    custos::avro::wire_header(1, &mut out);
    custos::avro::value::encode(&schema.root, &v, &mut out).unwrap();
    out
}
