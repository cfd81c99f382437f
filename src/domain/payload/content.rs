//! What each type of inbound message carries: text, media, a location,
//! contact cards, replies to our interactive messages, template button
//! taps, reactions, orders, system notices; and the context and ad
//! referral any message may have.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Text {
    pub body: String,
}

optional_fields! {
    /// Image, audio, video, document or sticker. `id` resolves to a download
    /// URL through the Graph API; `url` is sent directly on newer payloads.
    #[derive(Debug)]
    pub struct Media {
        id: String,
        mime_type: String,
        sha256: String,
        caption: String,
        filename: String,
        voice: bool,
        animated: bool,
        url: String,
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Location {
    pub latitude: f64,
    pub longitude: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

optional_fields! {
    /// A contact card the customer shared.
    #[derive(Debug)]
    pub struct SharedContact {
        name: ContactName,
        phones: Vec<ContactPhone>,
        emails: Vec<ContactEmail>,
        org: ContactOrg,
        addresses: Vec<ContactAddress>,
        urls: Vec<ContactUrl>,
        birthday: String,
    }
}

optional_fields! {
    #[derive(Debug)]
    pub struct ContactName {
        formatted_name: String,
        first_name: String,
        last_name: String,
        middle_name: String,
        suffix: String,
        prefix: String,
    }
}

optional_fields! {
    #[derive(Debug)]
    pub struct ContactPhone {
        phone: String,
        wa_id: String,
        #[serde(rename = "type")]
        kind: String,
    }
}

optional_fields! {
    #[derive(Debug)]
    pub struct ContactEmail {
        email: String,
        #[serde(rename = "type")]
        kind: String,
    }
}

optional_fields! {
    #[derive(Debug)]
    pub struct ContactOrg {
        company: String,
        department: String,
        title: String,
    }
}

optional_fields! {
    #[derive(Debug)]
    pub struct ContactAddress {
        street: String,
        city: String,
        state: String,
        zip: String,
        country: String,
        country_code: String,
        #[serde(rename = "type")]
        kind: String,
    }
}

optional_fields! {
    #[derive(Debug)]
    pub struct ContactUrl {
        url: String,
        #[serde(rename = "type")]
        kind: String,
    }
}

/// A reply to an interactive message we sent (button, list, WhatsApp Flow).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Interactive {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub button_reply: Option<ReplyChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_reply: Option<ReplyChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nfm_reply: Option<NfmReply>,
    /// Subtypes we do not model (their object is kept here).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Interactive {
    /// The id of the button or list row the customer chose.
    pub fn reply_id(&self) -> Option<&str> {
        self.button_reply
            .as_ref()
            .or(self.list_reply.as_ref())
            .map(|c| c.id.as_str())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplyChoice {
    pub id: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A WhatsApp Flow's answer; `response_json` is a string holding JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NfmReply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    pub response_json: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ButtonTap {
    #[serde(default)]
    pub payload: String,
    pub text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reaction {
    pub message_id: String,
    /// Empty or absent when the customer removed the reaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emoji: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Order {
    pub catalog_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default)]
    pub product_items: Vec<ProductItem>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProductItem {
    pub product_retailer_id: String,
    pub quantity: NumberLike,
    pub item_price: NumberLike,
    pub currency: String,
}

/// A number Meta may send as a JSON number or as a string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NumberLike {
    Int(i64),
    Float(f64),
    Text(String),
}

optional_fields! {
    /// A system message, e.g. the customer changed their number.
    #[derive(Debug)]
    pub struct System {
        body: String,
        wa_id: String,
        #[serde(rename = "type")]
        kind: String,
        customer: String,
        identity: String,
        new_wa_id: String,
    }
}

optional_fields! {
    #[derive(Debug)]
    pub struct Unsupported {
        #[serde(rename = "type")]
        kind: String,
    }
}

optional_fields! {
    /// What a message replies to, or that it was forwarded.
    #[derive(Debug)]
    pub struct Context {
        from: String,
        id: String,
        forwarded: bool,
        frequently_forwarded: bool,
        referred_product: ReferredProduct,
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReferredProduct {
    pub catalog_id: String,
    pub product_retailer_id: String,
}

optional_fields! {
    /// The Click-to-WhatsApp ad the customer came from.
    #[derive(Debug)]
    pub struct Referral {
        source_url: String,
        source_id: String,
        source_type: String,
        body: String,
        headline: String,
        media_type: String,
        image_url: String,
        video_url: String,
        thumbnail_url: String,
        ctwa_clid: String,
        welcome_message: WelcomeMessage,
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WelcomeMessage {
    pub text: String,
}
