use syncd_crdt::*;
use syncd_crdt::canonical::canonicalize;
#[test]
fn probe() {
    for t in ["-0", "1.0", "1e21", "1e-7", "0.1", "5e-324", "9007199254740993", "18446744073709551616", "1e20", "123456789012345680000", "-0.0", "[-0]", "0.000001", "1E400", "2e308", "4.9e-324", "1e-400",
      r#""\u00e9""#, r#""é""#, r#""\u2028""#, r#""\u001F\u007f""#, r#""\/""#, r#""\ud83d\ude00""#, r#"{"\uffff":1,"\ud83d\ude00":2}"#, r#"{"b":[],"a":{}}"#, "[null,true,false]", r#""\b\f\n\r\t\u0000""#, r#"{"a":1,"a":2}"#, " 1 ", "1 x", "", "NaN", r#""\ud800""#, r#""\udc00x""#, "[1,]", "01", "1.", ".5", "+1", "\"\t\"", "[1e23, 1e22, 333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001]"] {
        println!("{t:?} -> {:?}", canonicalize(t).map(|c| c.into_owned()).map_err(|e| e.message));
    }
    let d = Document::default();
    for f in [r#"["ops", 1, [{"key":"k","ts":"1764028800123-00000-a","value":1}]]"#, "[]", "5", "\"x\"", "null", r#"{"type":"ops","id":1.0,"ops":[{"key":"k","ts":"1764028800123-00000-a","value":1}]}"#, r#"{"type":"ops","id":1e0,"ops":[{"key":"k","ts":"1764028800123-00000-a","value":1}]}"#, r#"{"type":"ops","id":-0,"ops":[{"key":"k","ts":"1764028800123-00000-a","value":1}]}"#, r#"{"type":"ops","type":"ops","id":1,"ops":[{"key":"k","ts":"1764028800123-00000-a","value":1}]}"#] {
        println!("{f} -> {:?}", OpsFrame::parse(f, &d, None).map(|x| x.id));
    }
    for e in [r#"["k","1764028800123-00000-a",1]"#, r#"{"key":"k","ts":"1764028800123-00000-a","deleted" : true }"#, r#"{"key":"k","ts":"1764028800123-00000-a","value":"\ud800"}"#,r#"{"key":"\ud800","ts":"1764028800123-00000-a","value":1}"#, r#"{"key":"k","key":"j","ts":"1764028800123-00000-a","value":1}"#, r#"{"key":"k","ts":"1764028800123-00000-a","value":1,"value":2}"#, r#"{"key":null,"ts":"1764028800123-00000-a","value":1}"#] {
        println!("{e} -> {:?}", Entry::from_json(e, &Limits::default()));
    }
}
