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
