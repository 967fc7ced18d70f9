//! AttnLRP / CP-LRP (src/attnlrp.rs): conservation with biases zeroed (algorithms.md §7.5), the
//! explicit ε-LRP rules against the efficient gradient × input form, and the explainer flow.

use candle_core::{DType, Device, IndexOp, Tensor, Var};
use candle_nn::Linear;
use tokenlens::attnlrp::{self, Rules};
use tokenlens::bert::{BertClassifier, ForwardPass, LastLayer};
use tokenlens::{Explainer, ExplainerOptions, Method, Precision, Target};

const TINY: &str = "fixtures/golden/tiny-bert";
const TEXT: &str = "a gripping, beautifully acted film that never lets go.";

fn tiny_f64() -> Explainer {
    let options = ExplainerOptions {
        precision: Precision::F64,
        ..Default::default()
    };
    Explainer::load(TINY, options).expect("tiny-bert loads")
}

fn zeros_like(t: &Tensor) -> Tensor {
    t.zeros_like().unwrap()
}

fn without_bias(linear: &Linear) -> Linear {
    Linear::new(linear.weight().clone(), linear.bias().map(zeros_like))
}

/// The model with every bias of the encoder, pooler and classifier (LayerNorm β included) zero.
fn zero_biases(model: &BertClassifier) -> BertClassifier {
    let mut model = model.clone();
    for layer in &mut model.layers {
        for linear in [
            &mut layer.query,
            &mut layer.key,
            &mut layer.value,
            &mut layer.attention_output,
            &mut layer.intermediate,
            &mut layer.output,
        ] {
            *linear = without_bias(linear);
        }
        layer.merge_projections().unwrap();
        layer.attention_norm.bias = zeros_like(&layer.attention_norm.bias);
        layer.output_norm.bias = zeros_like(&layer.output_norm.bias);
    }
    model.pooler = without_bias(&model.pooler);
    model.classifier = without_bias(&model.classifier);
    model
}

fn ids_of(explainer: &Explainer, text: &str) -> (Tensor, Tensor) {
    let encoder = explainer.encoder();
    let mut ids = vec![encoder.cls_id];
    ids.extend(encoder.pieces(text).unwrap().iter().map(|p| p.id));
    ids.push(encoder.sep_id);
    let len = ids.len();
    (
        Tensor::from_vec(ids, (1, len), &Device::Cpu).unwrap(),
        Tensor::ones((1, len), DType::U32, &Device::Cpu).unwrap(),
    )
}

fn logit(pass: &ForwardPass, class: usize) -> f64 {
    pass.logits
        .i((0, class))
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_scalar()
        .unwrap()
}

#[test]
fn cp_lrp_conserves_the_target_logit_when_biases_are_zero() {
    let explainer = tiny_f64();
    let model = zero_biases(explainer.model());
    let (ids, mask) = ids_of(&explainer, TEXT);
    let pass = model.forward(&ids, &mask, false).unwrap();
    for class in 0..3 {
        let relevance = attnlrp::token_relevance(&model, &pass, &[class], Rules::CpLrp).unwrap();
        let total: f64 = relevance.sum_all().unwrap().to_scalar().unwrap();
        let target = logit(&pass, class);
        assert!(
            (total - target).abs() <= 1e-9 * target.abs().max(1.0),
            "class {class}: Σ R = {total}, logit = {target}"
        );
    }
}

#[test]
fn attnlrp_conserves_the_target_logit_up_to_softmax_absorption() {
    let explainer = tiny_f64();
    let model = zero_biases(explainer.model());
    let (ids, mask) = ids_of(&explainer, TEXT);
    let pass = model.forward(&ids, &mask, false).unwrap();
    let class = 2;
    let from_api = attnlrp::token_relevance(&model, &pass, &[class], Rules::AttnLrp).unwrap();
    let from_api: f64 = from_api.sum_all().unwrap().to_scalar().unwrap();
    // The last layer for every position (as the reference) and for [CLS] only (as the engine
    // runs it): the same logit, the same conservation, the same relevance.
    for last_layer in [LastLayer::AllPositions, LastLayer::ClsOnly] {
        let input = Var::from_tensor(&pass.embedded).unwrap();
        let patched = attnlrp::patched_forward(
            &model,
            input.as_tensor(),
            &pass.extended_mask,
            Rules::AttnLrp,
            true,
            last_layer,
        )
        .unwrap();
        let target: f64 = patched.logits.i((0, class)).unwrap().to_scalar().unwrap();
        assert!(
            (target - logit(&pass, class)).abs() < 1e-12,
            "{last_layer:?}: patched forward changed the logit"
        );
        let grads = attnlrp::target_objective(&patched.logits, &[class])
            .unwrap()
            .backward()
            .unwrap();
        let relevance_sum = |x: &Tensor, probe: &Var| -> f64 {
            let g = grads.get(probe.as_tensor()).unwrap();
            (x * g).unwrap().sum_all().unwrap().to_scalar().unwrap()
        };
        let tokens = relevance_sum(input.as_tensor(), &input);
        assert_eq!(patched.softmax_probes.len(), model.layers.len());
        // Relevance entering a softmax minus relevance leaving it: what its Taylor rule absorbs.
        let absorbed: f64 = patched
            .softmax_probes
            .iter()
            .map(|p| {
                relevance_sum(&p.probs, &p.probs_probe) - relevance_sum(&p.scores, &p.scores_probe)
            })
            .sum();
        assert!(
            absorbed.abs() > 1e-6,
            "the softmax absorbs something on a random model"
        );
        assert!(
            (tokens + absorbed - target).abs() <= 1e-9 * target.abs().max(1.0),
            "{last_layer:?}: Σ R = {tokens}, absorbed = {absorbed}, logit = {target}"
        );
        // The method's own entry point gives the same token relevance.
        assert!(
            (from_api - tokens).abs() < 1e-9,
            "{last_layer:?}: {from_api} from the API, {tokens} here"
        );
    }
}

fn matrix(linear: &Linear) -> (Vec<Vec<f64>>, Vec<f64>) {
    let w = linear
        .weight()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec2()
        .unwrap();
    let b = linear
        .bias()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap();
    (w, b)
}

fn apply(linear: &(Vec<Vec<f64>>, Vec<f64>), x: &[f64]) -> Vec<f64> {
    linear
        .0
        .iter()
        .zip(&linear.1)
        .map(|(row, b)| row.iter().zip(x).map(|(w, x)| w * x).sum::<f64>() + b)
        .collect()
}

/// ε-LRP through y = Wx + b: R_i = x_i Σ_j W_ji R_j / y_j (the bias absorbs its share).
fn linear_rule(linear: &(Vec<Vec<f64>>, Vec<f64>), x: &[f64], y: &[f64], r: &[f64]) -> Vec<f64> {
    (0..x.len())
        .map(|i| {
            x[i] * (0..y.len())
                .map(|j| linear.0[j][i] * r[j] / y[j])
                .sum::<f64>()
        })
        .collect()
}

fn gelu(x: f64) -> f64 {
    // erf via the tensor op keeps the test independent of a numerics crate.
    let t = Tensor::new(&[x / std::f64::consts::SQRT_2], &Device::Cpu).unwrap();
    let erf: Vec<f64> = t.erf().unwrap().to_vec1().unwrap();
    0.5 * x * (1.0 + erf[0])
}

#[test]
fn explicit_rules_agree_with_the_efficient_form_on_the_last_block_and_head() {
    let explainer = tiny_f64();
    let model = explainer.model();
    let (ids, mask) = ids_of(&explainer, TEXT);
    let pass = model.forward(&ids, &mask, false).unwrap();
    let last = model.layers.len() - 1;
    let layer = &model.layers[last];
    let class = 0;

    // Efficient: gradient × input at the input of the last feed-forward block.
    let block_input = Var::from_tensor(&pass.layers[last].attention_normed).unwrap();
    let hidden = attnlrp::feed_forward_block(model, layer, block_input.as_tensor()).unwrap();
    let logits = attnlrp::head(model, &hidden).unwrap();
    let grads = attnlrp::target_objective(&logits, &[class])
        .unwrap()
        .backward()
        .unwrap();
    let efficient: Vec<Vec<f64>> = (block_input.as_tensor()
        * grads.get(block_input.as_tensor()).unwrap())
    .unwrap()
    .i(0)
    .unwrap()
    .to_vec2()
    .unwrap();

    // Explicit rules, [CLS] row only (the head reads [CLS], the block is position-wise).
    let a: Vec<f64> = pass.layers[last]
        .attention_normed
        .i((0, 0))
        .unwrap()
        .to_vec1()
        .unwrap();
    let intermediate = matrix(&layer.intermediate);
    let output = matrix(&layer.output);
    let pooler = matrix(&model.pooler);
    let classifier = matrix(&model.classifier);
    let gamma: Vec<f64> = layer.output_norm.weight.to_vec1().unwrap();
    let beta: Vec<f64> = layer.output_norm.bias.to_vec1().unwrap();
    let u = apply(&intermediate, &a);
    let f: Vec<f64> = u.iter().map(|&x| gelu(x)).collect();
    let o = apply(&output, &f);
    let s: Vec<f64> = o.iter().zip(&a).map(|(o, a)| o + a).collect();
    let d = s.len() as f64;
    let mean = s.iter().sum::<f64>() / d;
    let xc: Vec<f64> = s.iter().map(|v| v - mean).collect();
    let sigma = (xc.iter().map(|v| v * v).sum::<f64>() / d + layer.output_norm.eps).sqrt();
    let scaled: Vec<f64> = xc.iter().zip(&gamma).map(|(x, g)| g * x / sigma).collect();
    let y: Vec<f64> = scaled.iter().zip(&beta).map(|(t, b)| t + b).collect();
    let z = apply(&pooler, &y);
    let p: Vec<f64> = z.iter().map(|v| v.tanh()).collect();
    let out = apply(&classifier, &p);
    assert!((out[class] - logit(&pass, class)).abs() < 1e-9);

    let mut r_out = vec![0.0; out.len()];
    r_out[class] = out[class];
    let r_p = linear_rule(&classifier, &p, &out, &r_out);
    let r_z = r_p; // tanh: identity rule
    let r_y = linear_rule(&pooler, &y, &z, &r_z);
    // ×γ/σ (σ constant) and +β: a diagonal linear map with bias.
    let r_xc: Vec<f64> = (0..y.len()).map(|j| scaled[j] * r_y[j] / y[j]).collect();
    // Centering xc = s − mean(s) is linear: R_s_i = s_i Σ_j (δ_ij − 1/D) R_xc_j / xc_j.
    let ratio_sum: f64 = (0..y.len()).map(|j| r_xc[j] / xc[j]).sum();
    let r_s: Vec<f64> = (0..y.len())
        .map(|i| s[i] * (r_xc[i] / xc[i] - ratio_sum / d))
        .collect();
    let r_o: Vec<f64> = (0..y.len()).map(|i| o[i] * r_s[i] / s[i]).collect();
    let r_f = linear_rule(&output, &f, &o, &r_o);
    let r_u = r_f; // GELU: identity rule
    let r_a_branch = linear_rule(&intermediate, &a, &u, &r_u);
    let explicit: Vec<f64> = (0..a.len())
        .map(|i| a[i] * r_s[i] / s[i] + r_a_branch[i])
        .collect();

    let scale = explicit.iter().map(|v| v.abs()).fold(0.0, f64::max);
    for (i, (e, x)) in efficient[0].iter().zip(&explicit).enumerate() {
        assert!(
            (e - x).abs() <= 1e-7 * scale,
            "unit {i}: efficient {e}, explicit {x}"
        );
    }
    for row in &efficient[1..] {
        assert!(
            row.iter().all(|v| v.abs() < 1e-12),
            "only [CLS] feeds the head"
        );
    }
}

#[test]
fn explainer_computes_both_methods_in_its_normal_flow() {
    let explainer = tiny_f64();
    let methods = [Method::AttnLrp, Method::CpLrp, Method::GradientXInput];
    let texts = [
        TEXT,
        "bad.",
        "an overlong, tedious and joyless exercise in style",
    ];
    let batch = explainer
        .explain_batch(&texts, &methods, Target::Predicted)
        .unwrap();
    for (text, explained) in texts.iter().zip(&batch) {
        let alone = explainer
            .explain(text, &[Method::CpLrp], Target::Predicted)
            .unwrap();
        let cp = explained.attribution(Method::CpLrp).unwrap();
        assert_eq!(cp.token_scores.len(), explained.tokens.len());
        // Padding in a batch must not change a text's relevance.
        for (a, b) in cp
            .token_scores
            .iter()
            .zip(&alone.attributions[0].token_scores)
        {
            assert!((a - b).abs() < 1e-9, "{text}: batched {a} vs alone {b}");
        }
        let attn = explained.attribution(Method::AttnLrp).unwrap();
        assert!(attn.token_scores.iter().all(|v| v.is_finite()));
        assert_ne!(attn.token_scores, cp.token_scores);
    }
    assert_eq!("cplrp".parse::<Method>().unwrap(), Method::CpLrp);
    assert_eq!("attnlrp".parse::<Method>().unwrap(), Method::AttnLrp);
}

/// AttnLRP/CP-LRP requested alone skip the instrumented forward pass (their patched pass supplies
/// the logits); the result must be the one computed beside the other methods, which do use it.
#[test]
fn patched_methods_alone_equal_the_same_methods_beside_others() {
    let explainer = tiny_f64();
    let texts = [
        "a gripping, beautifully acted film",
        "dull plot, sadly, and the ending drags on and on",
    ];
    for target in [Target::Predicted, Target::Class(0), Target::Class(1)] {
        let alone = explainer
            .explain_batch(&texts, &[Method::AttnLrp, Method::CpLrp], target)
            .unwrap();
        let beside = explainer
            .explain_batch(
                &texts,
                &[Method::GradientXInput, Method::AttnLrp, Method::CpLrp],
                target,
            )
            .unwrap();
        for (a, b) in alone.iter().zip(&beside) {
            assert_eq!(a.predicted, b.predicted);
            assert_eq!(a.target, b.target);
            for (x, y) in a.logits.iter().zip(&b.logits) {
                assert!((x - y).abs() < 1e-10, "logits {x} vs {y}");
            }
            for method in [Method::AttnLrp, Method::CpLrp] {
                let x = &a.attribution(method).unwrap().token_scores;
                let y = &b.attribution(method).unwrap().token_scores;
                assert_eq!(x.len(), y.len());
                for (p, q) in x.iter().zip(y) {
                    assert!((p - q).abs() < 1e-10, "{method}: {p} vs {q}");
                }
            }
        }
    }
}
