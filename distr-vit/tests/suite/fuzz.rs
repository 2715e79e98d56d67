//! Mutants of every file `distr-vit` reads (`parser_fuzz`): the ONNX initializers (a copy of
//! `vit_s_focus.onnx` with every initializer cut to at most 2 per axis, so that mutants are
//! cheap), safetensors checkpoints read through `burn-store`, photos (JPEG and PNG) and `.npy`
//! arrays. Each must give an error or its contents, never a panic or an allocation the file
//! cannot justify.

use distr_attn::experiment::npy;
use distr_vit::import::{read_onnx, read_safetensors};
use distr_vit::preprocess::load_rgb;
use onnx_ir::{ModelProto, TensorProto};
use parser_fuzz::{fuzz, Scratch, Target};
use protobuf::Message;

use crate::common::{fixture, vit_s_focus_onnx};

/// Several times what a parse of the file holds, and never what a corrupt count could ask.
fn budget(file_len: usize) -> usize {
    16 * file_len + (4 << 20)
}

#[test]
fn onnx_initializers() {
    let original = small_onnx();
    let scratch = Scratch::new("distr-vit-fuzz", "model.onnx");
    read_onnx(scratch.write(&original)).expect("the unmutated small model reads");
    // A protobuf message may end after any field: some cuts are whole messages.
    let target = Target::new("small vit_s_focus.onnx", budget(original.len())).truncation_may_parse();
    fuzz(&target, &original, |bytes| read_onnx(scratch.write(bytes)).map(drop));
}

/// Corrupt fields of one initializer (the patch embedding's weight), set through the protobuf
/// bindings rather than found by byte mutation: each must be an error naming it.
#[test]
fn onnx_initializer_fields() {
    let model = ModelProto::parse_from_bytes(&small_onnx()).unwrap();
    let name = "backbone.embeddings.patch_embeddings.projection.weight";
    let scratch = Scratch::new("distr-vit-fuzz", "fields.onnx");
    let corruptions: [(&str, fn(&mut TensorProto)); 6] = [
        ("a negative dim", |t| t.dims[0] = -1),
        ("dims whose product overflows", |t| t.dims = vec![1 << 40, 1 << 40]),
        ("more values than data", |t| t.dims[0] = 3),
        ("data cut short", |t| t.raw_data.truncate(5)),
        ("an unknown data type", |t| t.data_type = 99),
        ("external data", |t| t.data_location = protobuf::EnumOrUnknown::from_i32(1)),
    ];
    for (what, corrupt) in corruptions {
        let mut model = model.clone();
        let graph = model.graph.as_mut().unwrap();
        corrupt(graph.initializer.iter_mut().find(|tensor| tensor.name == name).unwrap());
        let result = read_onnx(scratch.write(&model.write_to_bytes().unwrap()));
        let error = result.err().unwrap_or_else(|| panic!("{what} was accepted")).to_string();
        assert!(error.contains(name), "{what}: {error}");
    }
}

#[test]
fn safetensors_checkpoints() {
    for name in ["hf_dinov2/model.safetensors", "timm_vit/model.safetensors"] {
        let original = std::fs::read(fixture(name)).unwrap();
        let scratch = Scratch::new("distr-vit-fuzz", &name.replace('/', "-"));
        fuzz(&Target::new(name, budget(original.len())), &original, |bytes| read_safetensors(scratch.write(bytes)).map(drop));
    }
}

/// Decoded photos may be far larger than their files (a flat image compresses a thousandfold):
/// the budget is what `load_rgb` allows any image to take.
#[test]
fn photos() {
    let jpeg = std::fs::read(fixture("images/rocket.jpg")).unwrap();
    let mut png = Vec::new();
    let photo = load_rgb(&fixture("images/chelsea.jpg")).unwrap();
    photo.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
    // A PNG ends with an empty `IEND` chunk (12 bytes): the image is whole before it.
    let png_whole = png.len() - 12;
    for (name, original, whole_from) in [("rocket.jpg", jpeg, usize::MAX), ("chelsea.png", png, png_whole)] {
        let scratch = Scratch::new("distr-vit-fuzz", name);
        let target = Target::new(name, 2 * distr_vit::preprocess::MAX_IMAGE_BYTES as usize).whole_from(whole_from);
        fuzz(&target, &original, |bytes| load_rgb(scratch.write(bytes)).map(drop));
    }
}

#[test]
fn npy_arrays() {
    let original = std::fs::read(fixture("hf_dinov2/input.npy")).unwrap();
    let scratch = Scratch::new("distr-vit-fuzz", "input.npy");
    fuzz(&Target::new("input.npy", budget(original.len())), &original, |bytes| npy::read_f32(scratch.write(bytes)).map(drop));
}

/// `vit_s_focus.onnx` with every initializer cut to at most 2 entries per axis: the same graph,
/// names and tensor types, a few hundred kilobytes.
fn small_onnx() -> Vec<u8> {
    let bytes = std::fs::read(vit_s_focus_onnx()).unwrap();
    let mut model = ModelProto::parse_from_bytes(&bytes).unwrap();
    let graph = model.graph.as_mut().unwrap();
    graph.initializer.iter_mut().for_each(shrink);
    model.write_to_bytes().unwrap()
}

fn shrink(tensor: &mut TensorProto) {
    let elements: i64 = tensor.dims.iter().product();
    if elements == 0 {
        return;
    }
    tensor.dims.iter_mut().for_each(|dim| *dim = (*dim).min(2));
    let kept = tensor.dims.iter().product::<i64>() as usize;
    let width = tensor.raw_data.len() / elements as usize;
    tensor.raw_data.truncate(kept * width);
    tensor.float_data.truncate(kept);
    tensor.int32_data.truncate(kept);
    tensor.int64_data.truncate(kept);
    tensor.double_data.truncate(kept);
}
