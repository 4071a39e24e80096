//! Stripe's request bodies are forms whose keys spell nested objects and arrays:
//! `line_items[0][price_data][unit_amount]=3000`, `payment_method_types[]=card` (NOTES §1).

/// An ordered list of form fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form {
    fields: Vec<(String, String)>,
}

impl Form {
    pub fn new() -> Form {
        Form::default()
    }

    /// Add one field; `key` is already in Stripe's bracket notation.
    pub fn set(mut self, key: impl Into<String>, value: impl ToString) -> Form {
        self.fields.push((key.into(), value.to_string()));
        self
    }

    /// Add a field only when there is a value.
    pub fn set_opt(self, key: impl Into<String>, value: Option<impl ToString>) -> Form {
        match value {
            Some(v) => self.set(key, v),
            None => self,
        }
    }

    /// `prefix[k]=v` for each entry, in order.
    pub fn map<'a>(mut self, prefix: &str, entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> Form {
        for (k, v) in entries {
            self.fields.push((format!("{prefix}[{k}]"), v.to_string()));
        }
        self
    }

    pub fn fields(&self) -> &[(String, String)] {
        &self.fields
    }

    /// `application/x-www-form-urlencoded`.
    pub fn encode(&self) -> String {
        serde_urlencoded::to_string(&self.fields).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brackets_are_encoded_and_order_kept() {
        let f = Form::new()
            .set("line_items[0][price_data][unit_amount]", 3000)
            .set("payment_method_types[]", "card")
            .map("metadata", [("order", "o_1")])
            .set_opt("customer_email", None::<&str>);
        assert_eq!(
            f.encode(),
            "line_items%5B0%5D%5Bprice_data%5D%5Bunit_amount%5D=3000&payment_method_types%5B%5D=card&metadata%5Border%5D=o_1"
        );
    }
}
