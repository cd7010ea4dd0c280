//! JSON in the style IMDS writes it: two-space indent and `"Key" : value`.
//! Clients parse any JSON, but people diff against real instances.

use serde_json::Value;

pub fn object(fields: &[(&str, Value)]) -> String {
    let mut out = String::from("{\n");
    for (i, (key, value)) in fields.iter().enumerate() {
        out.push_str("  ");
        out.push_str(&Value::from(*key).to_string());
        out.push_str(" : ");
        out.push_str(&value.to_string());
        if i + 1 < fields.len() {
            out.push(',');
        }
        out.push('\n');
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_aws_style_and_parses_back() {
        let text = object(&[
            ("Code", "Success".into()),
            ("N", Value::Null),
            ("Q", "a\"b".into()),
        ]);
        assert_eq!(
            text,
            "{\n  \"Code\" : \"Success\",\n  \"N\" : null,\n  \"Q\" : \"a\\\"b\"\n}"
        );
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["Q"], "a\"b");
    }
}
