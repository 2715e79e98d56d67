//! Fine-tuning, checkpoints and calibration on a tiny random Llama (NdArray, a few seconds).

use std::path::PathBuf;

use burn::backend::Autodiff;
use burn::tensor::Tensor;
use distr_attn::backends::NdArrayBackend as B;
use distr_attn::experiment::calibration::{AttentionFlops, HeadRanking, HeadSearch, LayerOrder, LayerSearch};
use distr_attn::experiment::checkpoint::{load_checkpoint, save_checkpoint};
use distr_attn::{AttentionKind, DistrAttentionConfig, ModelAttentionConfig};
use distr_llama::calibrate::{calibrate, calibrate_heads, PerplexityBudget};
use distr_llama::cli::{Cli, Command};
use distr_llama::evaluation::perplexity;
use distr_llama::finetune::{finetune, FinetuneConfig, Loss, TokenCorpus, Trainable};
use distr_llama::pretrained::{build_llama, RandomWeights};
use distr_llama::{Llama, LlamaConfig};

type Trainer = Autodiff<B>;

/// 2 layers, width 32, 4 heads over 2 KV heads of 8, vocabulary 64.
fn tiny_config() -> LlamaConfig {
    LlamaConfig::new(64, 32, 2, 4, 2, 8, 48).with_max_seq_len(128)
}

fn tiny_model<Backend: distr_attn::DistrAttentionBackend>(seed: u64) -> Llama<Backend> {
    let config = tiny_config();
    build_llama(&config, &RandomWeights::new(config.clone(), seed), &Default::default()).unwrap()
}

/// A periodic token stream: learnable within a few steps.
fn periodic_ids(len: usize) -> Vec<u32> {
    (0..len).map(|i| ((i * 7) % 23) as u32).collect()
}

fn distr_g2() -> ModelAttentionConfig {
    ModelAttentionConfig::distr(DistrAttentionConfig::new().with_group_size(2).with_block_rows(8))
}

fn logits<Backend: distr_attn::DistrAttentionBackend>(model: &Llama<Backend>, ids: &[u32], plan: &ModelAttentionConfig) -> Vec<f32> {
    let device = Default::default();
    let model = model.clone().with_attention(plan).unwrap();
    let logits: Tensor<Backend, 3> = model.forward(model.tokens(ids, &device).unwrap(), &mut model.new_cache()).unwrap();
    logits.into_data().convert::<f32>().into_vec::<f32>().unwrap()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("distr-llama-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn short_run(train: Trainable, loss: Loss) -> FinetuneConfig {
    FinetuneConfig::new()
        .with_steps(12)
        .with_batch_size(2)
        .with_seq_len(24)
        .with_learning_rate(1e-2)
        .with_warmup_steps(2)
        .with_train(train)
        .with_loss(loss)
}

#[test]
fn finetuning_through_distr_attention_lowers_the_loss_and_the_checkpoint_reloads() {
    let corpus = TokenCorpus::new(&periodic_ids(480), 24, 0).unwrap();
    let plan = distr_g2();
    let config = short_run(Trainable::All, Loss::Lm);
    let model = tiny_model::<Trainer>(1).with_attention(&plan).unwrap();
    let (trained, report) = finetune(model, &corpus, &config, &Default::default(), |_, _| Ok(())).unwrap();
    assert_eq!(trained.attention(), &plan, "the trained model keeps its plan");
    assert_eq!(report.losses.len(), 12);
    let (first, last) = (report.losses[0], report.losses[11]);
    assert!(last < 0.7 * first, "loss {first} -> {last}");
    assert!(report.tokens_per_second.is_some_and(|speed| speed > 0.0));

    let dir = temp_dir("checkpoint");
    let path = dir.join("tiny");
    save_checkpoint(trained.clone(), &path).unwrap();
    let reloaded = load_checkpoint(tiny_model::<B>(99), &path, &Default::default()).unwrap();
    let ids = periodic_ids(40);
    assert_eq!(logits(&trained, &ids, &plan), logits(&reloaded, &ids, &plan));
    assert_ne!(logits(&tiny_model::<B>(99), &ids, &plan), logits(&reloaded, &ids, &plan));

    // A checkpoint of another shape is refused with the parameter named.
    let other = LlamaConfig::new(64, 32, 2, 4, 2, 8, 40).with_max_seq_len(128);
    let model = build_llama::<B>(&other, &RandomWeights::new(other.clone(), 0), &Default::default()).unwrap();
    let error = load_checkpoint(model, &path, &Default::default()).unwrap_err().to_string();
    assert!(error.contains("mlp") && error.contains("[32, 48]"), "{error}");
    assert!(load_checkpoint(tiny_model::<B>(0), &dir.join("missing"), &Default::default()).is_err());
    std::fs::remove_dir_all(dir).unwrap();
}

/// Fine-tuning on Burn's `Wgpu` (fusion; lavapipe in CI) runs the fused backward kernels (a
/// kernel head dim: 32) and follows NdArray's loss curve, whose gradients go through the
/// tensor-op reference: the same weights, batches and optimizer on both.
#[cfg(feature = "wgpu")]
#[test]
fn finetuning_on_fused_wgpu_takes_the_fused_backward_and_follows_ndarray() {
    fn losses<Backend>(config: &LlamaConfig, plan: &ModelAttentionConfig) -> Vec<f64>
    where
        Backend: burn::tensor::backend::AutodiffBackend + distr_attn::DistrAttentionBackend,
        Backend::InnerBackend: distr_attn::DistrAttentionBackend,
    {
        let device = Default::default();
        let model = build_llama::<Backend>(config, &RandomWeights::new(config.clone(), 5), &device).unwrap();
        let corpus = TokenCorpus::new(&periodic_ids(480), 24, 0).unwrap();
        let run = FinetuneConfig::new().with_steps(3).with_batch_size(2).with_seq_len(24).with_learning_rate(1e-3).with_warmup_steps(1);
        let (_, report) = finetune(model.with_attention(plan).unwrap(), &corpus, &run, &device, |_, _| Ok(())).unwrap();
        report.losses
    }
    let config = LlamaConfig::new(64, 128, 2, 4, 2, 32, 96).with_max_seq_len(128);
    let plan = ModelAttentionConfig::distr(DistrAttentionConfig::new().with_group_size(2).with_block_rows(64));
    let launches = distr_attn::kernel::kernel_launches();
    let fused = losses::<Autodiff<distr_attn::backends::WgpuBackend>>(&config, &plan);
    // Per step and layer one forward and one backward launch.
    let expected = 3 * 2 * 2;
    assert!(distr_attn::kernel::kernel_launches() - launches >= expected, "the fused backward did not run");
    let reference = losses::<Trainer>(&config, &plan);
    for (step, (fused, reference)) in fused.iter().zip(&reference).enumerate() {
        assert!((fused - reference).abs() <= 1e-3 * reference.abs(), "step {step}: loss {fused} on wgpu, {reference} on NdArray");
    }
}

#[test]
fn attention_only_and_lora_training_leave_the_other_weights_alone() {
    let corpus = TokenCorpus::new(&periodic_ids(480), 24, 0).unwrap();
    let plan = distr_g2();
    let original = tiny_model::<B>(1);
    let weight = |model: &Llama<B>, which: &str| {
        let layer = &model.layers[1];
        let linear = match which {
            "mlp" => &layer.mlp.up,
            "query" => &layer.attention.query,
            _ => &layer.attention.output,
        };
        linear.weight.val().into_data().convert::<f32>().into_vec::<f32>().unwrap()
    };
    for train in [Trainable::Attention, Trainable::Lora] {
        let config = short_run(train, Loss::Lm);
        let model = tiny_model::<Trainer>(1).with_attention(&plan).unwrap();
        let (trained, report) = finetune(model, &corpus, &config, &Default::default(), |_, _| Ok(())).unwrap();
        assert!(report.losses[11] < report.losses[0], "{train:?}: {:?}", report.losses);
        assert_eq!(weight(&trained, "mlp"), weight(&original, "mlp"), "{train:?}");
        assert_ne!(weight(&trained, "query"), weight(&original, "query"), "{train:?}");
        assert!(trained.layers.iter().all(|layer| layer.attention.adapters.is_none()));
    }
    let lora = short_run(Trainable::Lora, Loss::Lm).with_lora_rank(2);
    let model = tiny_model::<Trainer>(1).with_attention(&plan).unwrap();
    let (_, report) = finetune(model, &corpus, &lora, &Default::default(), |_, _| Ok(())).unwrap();
    // Rank 2 on q [32, 32], k and v [32, 16], o [32, 32], two layers.
    assert_eq!(report.trainable_parameters, 2 * 2 * ((32 + 32) + 2 * (32 + 16) + (32 + 32)));
}

#[test]
fn distillation_starts_at_zero_with_exact_attention_and_recovers_distr_attention() {
    let corpus = TokenCorpus::new(&periodic_ids(480), 24, 0).unwrap();
    let config = short_run(Trainable::All, Loss::Distill).with_steps(1);
    let (_, report) = finetune(tiny_model::<Trainer>(1), &corpus, &config, &Default::default(), |_, _| Ok(())).unwrap();
    assert!(report.losses[0].abs() < 1e-6, "KL to itself {}", report.losses[0]);

    // Larger weights than usual, so that attention is sharp and G=4 visibly departs from it.
    let config = tiny_config();
    let mut weights = RandomWeights::new(config.clone(), 1);
    weights.std = 0.3;
    let plan = ModelAttentionConfig::distr(DistrAttentionConfig::new().with_group_size(4).with_block_rows(8));
    let sharp = build_llama::<Trainer>(&config, &weights, &Default::default()).unwrap().with_attention(&plan).unwrap();
    // One fixed batch (two sequences, batch size two): the loss is measured on the same
    // tokens at every step, so its decrease is not batch noise.
    let one_batch = TokenCorpus::new(&periodic_ids(48), 24, 0).unwrap();
    let run = short_run(Trainable::All, Loss::Distill).with_steps(20).with_learning_rate(2e-3);
    let (_, report) = finetune(sharp, &one_batch, &run, &Default::default(), |_, _| Ok(())).unwrap();
    let losses = &report.losses;
    assert!(losses[0] > 1e-3, "G=4 should differ from exact: {losses:?}");
    assert!(losses[19] < 0.8 * losses[0], "{losses:?}");
}

#[test]
fn calibration_writes_a_config_the_cli_loads_and_that_keeps_the_budget() {
    let mut model = tiny_model::<B>(5);
    let device = Default::default();
    let ids = periodic_ids(96);
    let base = DistrAttentionConfig::new().with_block_rows(8).with_representative(distr_attn::Representative::Mean);
    let search = LayerSearch { num_layers: 2, num_heads: 4, head_dim: 8, group_sizes: vec![8, 4, 2], distr: base, order: LayerOrder::LastFirst };
    let budget = PerplexityBudget { max_increase: 0.001, context: 48 };
    let mut trials = 0;
    let calibration = calibrate(&mut model, &ids, &search, budget, &device, |_| trials += 1).unwrap();
    assert_eq!(calibration.search.trials.len(), trials);
    assert!(calibration.perplexity <= calibration.budget);
    assert_eq!(model.attention(), &calibration.search.plan, "the model is left with the plan");

    let dir = temp_dir("calibration");
    let path = dir.join("attention.json");
    burn::config::Config::save(&calibration.search.plan, &path).unwrap();
    let cli = Cli::try_parse_args([
        "distr-llama", "perplexity", "--model", "unused.gguf", "--text", "unused.md",
        "--config", path.to_str().unwrap(),
    ])
    .unwrap();
    let Command::Perplexity(args) = cli.command else { panic!("parsed another command") };
    let plan = args.attention.plan().unwrap();
    assert_eq!(plan, calibration.search.plan);
    assert_eq!(plan.per_layer.len(), 2);
    model.set_attention(&plan).unwrap();
    let measured = perplexity(&model, &ids, 48, 24, &device).unwrap().perplexity;
    assert!(measured <= calibration.budget, "{measured} over {}", calibration.budget);
    model.set_attention(&ModelAttentionConfig::exact()).unwrap();
    let exact = perplexity(&model, &ids, 48, 24, &device).unwrap().perplexity;
    assert!((calibration.budget - exact * 1.001).abs() < 1e-9);

    // A budget nothing exceeds: every layer takes the largest group size, and the score
    // products lose (1 - 1/8) of their Q K^T half, less the hashing.
    let generous = PerplexityBudget { max_increase: 1e6, context: 48 };
    let calibration = calibrate(&mut model, &ids, &search, generous, &device, |_| {}).unwrap();
    assert_eq!(calibration.search.trials.len(), 2);
    assert_eq!(calibration.search.group_sizes, vec![8, 8]);
    let flops = AttentionFlops::of(&calibration.search.plan, 2, 4, 8, 48).unwrap();
    let hashing = 2.0 * 48.0 * 8.0 * 16.0 * 4.0 * 2.0;
    assert!((flops.planned - (flops.exact * (1.0 - 0.5 * (1.0 - 1.0 / 8.0)) + hashing)).abs() < 1e-6);
    // Group sizes that do not divide head_dim are refused.
    let bad = LayerSearch { group_sizes: vec![3], ..search };
    assert!(calibrate(&mut model, &ids, &bad, budget, &device, |_| {}).is_err());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn per_head_calibration_keeps_the_budget_and_per_head_plans_run_in_the_model() {
    let mut model = tiny_model::<B>(5);
    let device = Default::default();
    let ids = periodic_ids(96);
    let base = DistrAttentionConfig::new().with_block_rows(8);
    let search = HeadSearch { num_layers: 2, num_heads: 4, head_dim: 8, group_sizes: vec![8, 4, 2], distr: base.clone(), rounds: 2, ranking: HeadRanking::Local };
    let budget = PerplexityBudget { max_increase: 0.01, context: 48 };
    let mut trials = 0;
    let calibration = calibrate_heads(&mut model, &ids, &search, budget, &device, |_| trials += 1).unwrap();
    let result = &calibration.search;
    assert_eq!(result.trials.len(), trials);
    assert!(trials <= search.max_trials());
    assert_eq!(result.ranking.len(), 2 * 4 * 3);
    assert!(result.ranking.iter().all(|candidate| candidate.error.is_finite() && candidate.error > 0.0), "{:?}", result.ranking);
    assert!(calibration.perplexity <= calibration.budget);
    assert_eq!(model.attention(), &result.plan, "the model is left with the plan");
    let measured = perplexity(&model, &ids, 48, 24, &device).unwrap().perplexity;
    assert_eq!(measured, calibration.perplexity, "the plan scores what the search measured");

    // A budget nothing exceeds: every head of every layer takes G = 8, written per layer.
    let generous = PerplexityBudget { max_increase: 1e6, context: 48 };
    let calibration = calibrate_heads(&mut model, &ids, &search, generous, &device, |_| {}).unwrap();
    assert_eq!(calibration.search.group_sizes, vec![vec![8; 4]; 2]);
    assert_eq!(calibration.search.plan.per_layer, vec![AttentionKind::Distr(base.clone().with_group_size(8)); 2]);

    // A per-head plan whose heads all agree gives the layer plan's logits exactly; one whose
    // heads differ runs through the model's grouped-query layout.
    let tokens = model.tokens(&ids[..40], &device).unwrap();
    let logits = |model: &mut Llama<B>, kind: AttentionKind| {
        model.set_attention(&ModelAttentionConfig::exact().with_per_layer(vec![kind.clone(), kind])).unwrap();
        model.forward(tokens.clone(), &mut model.new_cache()).unwrap()
    };
    let layer = logits(&mut model, AttentionKind::Distr(base.clone()));
    let heads = logits(&mut model, AttentionKind::PerHead(vec![base.clone(); 4]));
    layer.into_data().assert_eq(&heads.into_data(), true);
    let exact = DistrAttentionConfig::exact();
    let mixed = logits(&mut model, AttentionKind::PerHead(vec![exact.clone(), base.clone(), base.clone(), exact]));
    assert!(mixed.into_data().to_vec::<f32>().unwrap().iter().all(|value| value.is_finite()));
    let wrong = ModelAttentionConfig::exact().with_per_layer(vec![AttentionKind::PerHead(vec![base; 3]), AttentionKind::Exact]);
    let error = model.set_attention(&wrong).unwrap_err().to_string();
    assert!(error.contains("layer 0") && error.contains("one entry per query head (4)"), "{error}");
}
