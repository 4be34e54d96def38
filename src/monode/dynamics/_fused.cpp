// Fused elementwise tails of monode's vector fields, as differentiable ops (see _fused.py, which builds
// this file at first use). A field call is its network plus a tail of elementwise terms; on a CPU each
// ATen op costs microseconds of dispatch and autograd bookkeeping whatever the tensor size, so the tail
// is one op here: one pass forward, one pass backward. The ops are plain pybind11 functions (no
// dispatcher, no boxing): a call costs about as much as one ATen op. Scalar coefficients are read
// through their data pointer, not item(), which would dispatch.
//
// adam_tail (adam.py), state (h, m, v), network output f, a = act(v), r = (a + eps^2)^(-1/2):
//   dh = m r,   dm = beta1 (f - m) + nxi h,   dv = nb2 (v - f^2)          (nb2 = -beta2, nxi = -xi)
// adam_backward, cotangents (ch, cm, cv), gives what its VJP needs:
//   grad_f = beta1 cm - 2 nb2 f cv,  grad_m = r ch - beta1 cm,  grad_v = -r^3 act'(v) m ch / 2 + nb2 cv,
//   d/dbeta1 = <cm, f - m>, d/dnb2 = <cv, v - f^2>, d/dnxi = <cm, h>  (grad_h = grad_f . df/dh + nxi cm)
//   act: 0 identity, 1 softplus (torch's: above 20 it is the identity), 2 sigmoid.
//
// momentum_tail (heavy_ball.py, nesterov.py), with h = hs x and the momentum u = r p + dr h:
//   out1 = sigma2(u),   out2 = sign sigma3(f) + d u + nxi h          (d = damp, or -1 when absent)
//   backward: c_u = sigma2'(u) c1 + d c2; grad_f = sign sigma3'(f) c2; grad_x = hs (dr c_u + nxi c2);
//             grad_p = r c_u; d/d damp = <c2, u>; d/d nxi = hs <c2, x>.
//   HBNODE: p = m, x = h, d = -gamma, sigma3 = identity; NesterovNODE: p = m, d = -1, x the state and
//   hs = k(t) (h = k x); the official Nesterov field: p = b, x = a, hs = 1, r = r(t), dr = r'(t).
//   gates: 0 identity, 1 tanh, 2 sigmoid, 3 hardtanh(lo, hi).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/mul.h>
#include <ATen/ops/zeros_like.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/csrc/autograd/saved_variable.h>
#include <torch/csrc/utils/pybind.h>

#include <cmath>

#ifdef MONODE_LIBMVEC  // glibc's vector math: the loops below call 4- and 8-wide exp, log1p and tanh
extern "C" {
__attribute__((simd("notinbranch"))) float expf(float);
__attribute__((simd("notinbranch"))) float log1pf(float);
__attribute__((simd("notinbranch"))) float tanhf(float);
__attribute__((simd("notinbranch"))) double exp(double);
__attribute__((simd("notinbranch"))) double log1p(double);
__attribute__((simd("notinbranch"))) double tanh(double);
}
#endif

namespace {

using torch::autograd::Node;
using torch::autograd::SavedVariable;
using torch::autograd::variable_list;
using at::Tensor;

inline float vexp(float x) { return ::expf(x); }
inline double vexp(double x) { return ::exp(x); }
inline float vlog1p(float x) { return ::log1pf(x); }
inline double vlog1p(double x) { return ::log1p(x); }
inline float vtanh(float x) { return ::tanhf(x); }
inline double vtanh(double x) { return ::tanh(x); }

// a = act(v), da = act'(v); branch-free so the loops vectorise; NaN propagates.
template <typename T, int KIND>
inline void activation(T x, T& a, T& da) {
    if (KIND == 1) {
        T z = vexp(x > T(20) ? T(20) : x);
        a = x > T(20) ? x : vlog1p(z);
        da = x > T(20) ? T(1) : z / (T(1) + z);
    } else if (KIND == 2) {
        a = T(1) / (T(1) + vexp(-x));
        da = a * (T(1) - a);
    } else {
        a = x;
        da = T(1);
    }
}

// y = gate(x) and gate'(x) for the momentum gates.
template <typename T, int GATE>
inline T gate(T x, T lo, T hi) {
    if (GATE == 1) return vtanh(x);
    if (GATE == 2) return T(1) / (T(1) + vexp(-x));
    if (GATE == 3) return x < lo ? lo : (x > hi ? hi : x);
    return x;
}
template <typename T, int GATE>
inline T gate_slope(T x, T y, T lo, T hi) {
    if (GATE == 1) return T(1) - y * y;
    if (GATE == 2) return y * (T(1) - y);
    if (GATE == 3) return (x > lo && x < hi) ? T(1) : T(0);
    return T(1);
}

template <typename F>
void with_kind(int64_t kind, F&& f) {  // f(std::integral_constant<int, K>) for K = kind
    switch (kind) {
        case 1: f(std::integral_constant<int, 1>()); break;
        case 2: f(std::integral_constant<int, 2>()); break;
        case 3: f(std::integral_constant<int, 3>()); break;
        default: f(std::integral_constant<int, 0>()); break;
    }
}

// A scalar coefficient (0 if absent): read in place when it has the loop's dtype (item() would dispatch).
template <typename T>
T scalar(const Tensor& c) {
    if (!c.defined()) return T(0);
    TORCH_CHECK(c.numel() == 1 && c.device().is_cpu(), "monode_fused: coefficients must be one-element CPU tensors");
    return c.scalar_type() == c10::CppTypeToScalarType<T>::value ? *c.data_ptr<T>() : c.item<T>();
}

constexpr int64_t kGrain = 32768;  // elements per task of at::parallel_for (smaller tensors: one thread)

Tensor opt(const std::optional<Tensor>& t) { return t ? *t : Tensor(); }

// The backward nodes compute with raw loops, so their results are not differentiable again: refuse a
// create_graph backward (the engine runs it with grad mode on) rather than give silently wrong
// second derivatives.
void no_double_backward() {
    TORCH_CHECK(!at::GradMode::is_enabled(), "monode_fused: the fused tail ops have no double backward "
                "(create_graph=True); set MONODE_FUSED=0 to use the fields' ATen ops");
}

// An output's incoming gradient: zeros where the output was not used (the engine passes undefined).
Tensor or_zeros(const Tensor& grad, const Tensor& like) { return grad.defined() ? grad : at::zeros_like(like); }

// Whether autograd records (else the op builds no backward node). Forward-mode AD (dual tensors) is refused:
// the loops would drop the tangents.
bool needs_grad(std::initializer_list<Tensor> tensors) {
    for (const auto& t : tensors)
        TORCH_CHECK(!torch::autograd::isFwGradDefined(t), "monode_fused: no forward-mode AD through the fused tail "
                    "ops; set MONODE_FUSED=0 to use the fields' ATen ops");
    if (!at::GradMode::is_enabled()) return false;
    for (const auto& t : tensors)
        if (t.defined() && t.requires_grad()) return true;
    return false;
}

// The loops read f.numel() elements of every operand: same shape, dtype and device as f, dense.
Tensor like(const Tensor& x, const Tensor& f, const char* name) {
    TORCH_CHECK(x.sizes() == f.sizes() && x.scalar_type() == f.scalar_type() && x.device() == f.device(),
                "monode_fused: ", name, " must have f's shape, dtype and device; got ", x.sizes(), " ",
                x.scalar_type(), " vs ", f.sizes(), " ", f.scalar_type());
    return x.contiguous();
}

// ---------------------------------------------------------------- AdamNODE

std::tuple<Tensor, Tensor, Tensor> adam_forward_impl(const Tensor& f_, const Tensor& h_, const Tensor& m_,
                                                     const Tensor& v_, const Tensor& beta1, const Tensor& nb2,
                                                     const std::optional<Tensor>& nxi, int64_t kind, double eps2) {
    TORCH_CHECK(f_.device().is_cpu(), "monode_fused: CPU tensors only");
    Tensor f = f_.contiguous(), h = like(h_, f, "h"), m = like(m_, f, "m"), v = like(v_, f, "v");
    Tensor dh = at::empty_like(f), dm = at::empty_like(f), dv = at::empty_like(f);
    const int64_t n = f.numel();
    AT_DISPATCH_FLOATING_TYPES(f.scalar_type(), "adam_forward", [&] {
        using T = scalar_t;
        const T b1 = scalar<T>(beta1), b2 = scalar<T>(nb2), xi = nxi ? scalar<T>(*nxi) : T(0), e2 = T(eps2);
        const T* __restrict__ pf = f.data_ptr<T>();
        const T* __restrict__ ph = h.data_ptr<T>();
        const T* __restrict__ pm = m.data_ptr<T>();
        const T* __restrict__ pv = v.data_ptr<T>();
        T* __restrict__ odh = dh.data_ptr<T>();
        T* __restrict__ odm = dm.data_ptr<T>();
        T* __restrict__ odv = dv.data_ptr<T>();
        with_kind(kind, [&](auto K) {
            at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
            _Pragma("omp simd")
            for (int64_t i = begin; i < end; ++i) {
                T x = pv[i], fi = pf[i], mi = pm[i], a, da;
                activation<T, decltype(K)::value>(x, a, da);
                odh[i] = mi / std::sqrt(a + e2);
                odm[i] = (fi - mi) * b1 + ph[i] * xi;
                odv[i] = (x - fi * fi) * b2;
            }
            });
        });
    });
    return {dh, dm, dv};
}

// The gradient of coefficient c (sum accumulated in float64): a tensor like c, or undefined where c is absent or
// does not require grad. Written in place, not built with ATen ops (each would dispatch).
Tensor coef_grad(double value, const Tensor& c) {
    if (!c.defined() || !c.requires_grad()) return Tensor();
    Tensor g = at::empty({}, c.options());
    AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "coef_grad", [&] { *g.data_ptr<scalar_t>() = scalar_t(value); });
    return g;
}

// (grad_f, grad_m, grad_v, d/dbeta1, d/dnb2, d/dnxi), the last three as coef_grad.
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> adam_backward(
        const Tensor& f_, const Tensor& h_, const Tensor& m_, const Tensor& v_, const Tensor& ch_, const Tensor& cm_,
        const Tensor& cv_, const Tensor& beta1, const Tensor& nb2, const std::optional<Tensor>& nxi, int64_t kind,
        double eps2) {
    TORCH_CHECK(f_.device().is_cpu(), "monode_fused: CPU tensors only");
    Tensor f = f_.contiguous(), h = like(h_, f, "h"), m = like(m_, f, "m"), v = like(v_, f, "v");
    Tensor ch = like(ch_, f, "ch"), cm = like(cm_, f, "cm"), cv = like(cv_, f, "cv");
    Tensor gf = at::empty_like(f), gm = at::empty_like(f), gv = at::empty_like(f);
    double s1 = 0, s2 = 0, s3 = 0;  // one pass, in order: the reductions are serial
    const int64_t n = f.numel();
    AT_DISPATCH_FLOATING_TYPES(f.scalar_type(), "adam_backward", [&] {
        using T = scalar_t;
        const T b1 = scalar<T>(beta1), b2 = scalar<T>(nb2), e2 = T(eps2);
        const T* __restrict__ pf = f.data_ptr<T>();
        const T* __restrict__ ph = h.data_ptr<T>();
        const T* __restrict__ pm = m.data_ptr<T>();
        const T* __restrict__ pv = v.data_ptr<T>();
        const T* __restrict__ pch = ch.data_ptr<T>();
        const T* __restrict__ pcm = cm.data_ptr<T>();
        const T* __restrict__ pcv = cv.data_ptr<T>();
        T* __restrict__ ogf = gf.data_ptr<T>();
        T* __restrict__ ogm = gm.data_ptr<T>();
        T* __restrict__ ogv = gv.data_ptr<T>();
        with_kind(kind, [&](auto K) {
            _Pragma("omp simd reduction(+ : s1, s2, s3)")
            for (int64_t i = 0; i < n; ++i) {
                T x = pv[i], fi = pf[i], mi = pm[i], chi = pch[i], cmi = pcm[i], cvi = pcv[i], a, da;
                activation<T, decltype(K)::value>(x, a, da);
                T r = T(1) / std::sqrt(a + e2);
                T v_minus_f2 = x - fi * fi;
                ogf[i] = cmi * b1 - T(2) * fi * (cvi * b2);
                ogm[i] = chi * r - cmi * b1;
                ogv[i] = T(-0.5) * (chi * r * mi) * (r * r) * da + cvi * b2;
                s1 += double(cmi) * double(fi - mi);
                s2 += double(cvi) * double(v_minus_f2);
                s3 += double(cmi) * double(ph[i]);
            }
        });
    });
    return {gf, gm, gv, coef_grad(s1, beta1), coef_grad(s2, nb2), coef_grad(s3, opt(nxi))};
}

// The backward node autograd records for adam_tail (a plain Node, as ATen's generated ones: cheaper to
// record than a custom Function's, which a field call pays on every evaluation).
struct AdamTailBackward : public Node {
    SavedVariable f, h, m, v, beta1, nb2, nxi;
    int64_t kind = 0;
    double eps2 = 0;
    std::string name() const override { return "monode::AdamTailBackward"; }
    void release_variables() override {
        for (auto* s : {&f, &h, &m, &v, &beta1, &nb2, &nxi}) s->reset_data();
    }
    variable_list apply(variable_list&& grads) override {
        no_double_backward();
        Tensor f_ = f.unpack(), h_ = h.unpack(), m_ = m.unpack(), v_ = v.unpack(), b1 = beta1.unpack(), b2 = nb2.unpack();
        Tensor xi = nxi.unpack();
        auto [gf, gm, gv, g1, g2, gxi] = adam_backward(f_, h_, m_, v_, or_zeros(grads[0], f_), or_zeros(grads[1], f_),
                                                       or_zeros(grads[2], f_), b1, b2, xi, kind, eps2);
        Tensor gh = xi.defined() && grads[1].defined() ? at::mul(grads[1], xi) : Tensor();
        return {gf, gh, gm, gv, g1, g2, gxi};
    }
};

std::tuple<Tensor, Tensor, Tensor> adam_tail(const Tensor& f, const Tensor& h, const Tensor& m, const Tensor& v,
                                             const Tensor& beta1, const Tensor& nb2, const std::optional<Tensor>& nxi,
                                             int64_t kind, double eps2) {
    auto [dh, dm, dv] = adam_forward_impl(f, h, m, v, beta1, nb2, nxi, kind, eps2);
    if (needs_grad({f, h, m, v, beta1, nb2, opt(nxi)})) {
        auto node = c10::make_intrusive<AdamTailBackward>();
        node->set_next_edges(torch::autograd::collect_next_edges(f, h, m, v, beta1, nb2, opt(nxi)));
        node->f = SavedVariable(f, false), node->h = SavedVariable(h, false), node->m = SavedVariable(m, false);
        node->v = SavedVariable(v, false), node->beta1 = SavedVariable(beta1, false);
        node->nb2 = SavedVariable(nb2, false), node->nxi = SavedVariable(opt(nxi), false);
        node->kind = kind, node->eps2 = eps2;
        const c10::intrusive_ptr<Node> grad_fn = node;
        for (Tensor* out : {&dh, &dm, &dv}) torch::autograd::set_history(*out, grad_fn);
    }
    return {dh, dm, dv};
}

// ---------------------------------------------------------------- heavy-ball and Nesterov momentum

struct Momentum {  // the op's constants: u = r p + dr h, h = hs x, out2 = sign sigma3(f) + d u + nxi h
    double r, dr, hs, sign;
    int64_t gate, f_gate;
    double lo, hi, f_lo, f_hi;
};

// The constants in the loops' dtype; absent damp is -1, absent nxi 0; the h scale is folded into dr and nxi.
template <typename T>
struct MomentumLoop {
    T d, r, drh, xih, s, lo, hi, flo, fhi;
    MomentumLoop(const Momentum& c, const Tensor& damp, const Tensor& nxi)
        : d(damp.defined() ? scalar<T>(damp) : T(-1)), r(T(c.r)), drh(T(c.dr * c.hs)), xih(scalar<T>(nxi) * T(c.hs)),
          s(T(c.sign)), lo(T(c.lo)), hi(T(c.hi)), flo(T(c.f_lo)), fhi(T(c.f_hi)) {}
};

template <typename F>
void with_gates(const Momentum& c, F&& f) {
    with_kind(c.gate, [&](auto G) { with_kind(c.f_gate, [&](auto FG) { f(G, FG); }); });
}

std::tuple<Tensor, Tensor> momentum_forward_impl(const Tensor& f_, const Tensor& x_, const Tensor& p_,
                                                 const Tensor& damp, const Tensor& nxi, const Momentum& c) {
    TORCH_CHECK(f_.device().is_cpu(), "monode_fused: CPU tensors only");
    Tensor f = f_.contiguous(), x = like(x_, f, "h"), p = like(p_, f, "p");
    Tensor o1 = at::empty_like(f), o2 = at::empty_like(f);
    const int64_t n = f.numel();
    AT_DISPATCH_FLOATING_TYPES(f.scalar_type(), "momentum_forward", [&] {
        using T = scalar_t;
        const MomentumLoop<T> k(c, damp, nxi);
        const T d = k.d, r = k.r, drh = k.drh, xih = k.xih, s = k.s, lo = k.lo, hi = k.hi, flo = k.flo, fhi = k.fhi;
        const T* __restrict__ pf = f.data_ptr<T>();
        const T* __restrict__ px = x.data_ptr<T>();
        const T* __restrict__ pp = p.data_ptr<T>();
        T* __restrict__ q1 = o1.data_ptr<T>();
        T* __restrict__ q2 = o2.data_ptr<T>();
        with_gates(c, [&](auto G, auto FG) {
            at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
            _Pragma("omp simd")
            for (int64_t i = begin; i < end; ++i) {
                T xi_ = px[i], u = pp[i] * r + xi_ * drh;
                q1[i] = gate<T, decltype(G)::value>(u, lo, hi);
                q2[i] = s * gate<T, decltype(FG)::value>(pf[i], flo, fhi) + d * u + xih * xi_;
            }
            });
        });
    });
    return {o1, o2};
}

// (grad_f, grad_x, grad_p, d/ddamp = <c2, u>, d/dnxi = hs <c2, x>), the last two as coef_grad.
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> momentum_backward_impl(const Tensor& f_, const Tensor& x_, const Tensor& p_,
                                                                  const Tensor& damp, const Tensor& nxi, const Tensor& c1_,
                                                                  const Tensor& c2_, const Momentum& c) {
    Tensor f = f_.contiguous(), x = like(x_, f, "h"), p = like(p_, f, "p");
    Tensor c1 = like(c1_, f, "c1"), c2 = like(c2_, f, "c2");
    Tensor gf = at::empty_like(f), gx = at::empty_like(f), gp = at::empty_like(f);
    double su = 0, sx = 0;  // one pass, in order: the reductions are serial
    const int64_t n = f.numel();
    AT_DISPATCH_FLOATING_TYPES(f.scalar_type(), "momentum_backward", [&] {
        using T = scalar_t;
        const MomentumLoop<T> k(c, damp, nxi);
        const T d = k.d, r = k.r, drh = k.drh, xih = k.xih, s = k.s, lo = k.lo, hi = k.hi, flo = k.flo, fhi = k.fhi;
        const T* __restrict__ pf = f.data_ptr<T>();
        const T* __restrict__ px = x.data_ptr<T>();
        const T* __restrict__ pp = p.data_ptr<T>();
        const T* __restrict__ pc1 = c1.data_ptr<T>();
        const T* __restrict__ pc2 = c2.data_ptr<T>();
        T* __restrict__ ogf = gf.data_ptr<T>();
        T* __restrict__ ogx = gx.data_ptr<T>();
        T* __restrict__ ogp = gp.data_ptr<T>();
        with_gates(c, [&](auto G, auto FG) {
            _Pragma("omp simd reduction(+ : su, sx)")
            for (int64_t i = 0; i < n; ++i) {
                T xi_ = px[i], u = pp[i] * r + xi_ * drh, fi = pf[i], c2i = pc2[i];
                T gu = gate<T, decltype(G)::value>(u, lo, hi);
                T gfv = gate<T, decltype(FG)::value>(fi, flo, fhi);
                T cu = gate_slope<T, decltype(G)::value>(u, gu, lo, hi) * pc1[i] + d * c2i;
                ogf[i] = s * gate_slope<T, decltype(FG)::value>(fi, gfv, flo, fhi) * c2i;
                ogx[i] = drh * cu + xih * c2i;
                ogp[i] = r * cu;
                su += double(c2i) * double(u);
                sx += double(c2i) * double(xi_);
            }
        });
    });
    return {gf, gx, gp, coef_grad(su, damp), coef_grad(sx * c.hs, nxi)};
}

struct MomentumTailBackward : public Node {  // as AdamTailBackward, for momentum_tail
    SavedVariable f, x, p, damp, nxi;
    Momentum c{};
    std::string name() const override { return "monode::MomentumTailBackward"; }
    void release_variables() override {
        for (auto* s : {&f, &x, &p, &damp, &nxi}) s->reset_data();
    }
    variable_list apply(variable_list&& grads) override {
        no_double_backward();
        Tensor f_ = f.unpack(), d = damp.unpack(), xi = nxi.unpack();
        auto [gf, gx, gp, gd, gxi] = momentum_backward_impl(f_, x.unpack(), p.unpack(), d, xi, or_zeros(grads[0], f_),
                                                            or_zeros(grads[1], f_), c);
        return {gf, gx, gp, gd, gxi};
    }
};

std::tuple<Tensor, Tensor> momentum_tail(const Tensor& f, const Tensor& x, const Tensor& p,
                                         const std::optional<Tensor>& damp, const std::optional<Tensor>& nxi,
                                         double hs, double r, double dr, int64_t sign, int64_t gate, double lo,
                                         double hi, int64_t f_gate, double f_lo, double f_hi) {
    Momentum c{r, dr, hs, double(sign), gate, f_gate, lo, hi, f_lo, f_hi};
    auto [o1, o2] = momentum_forward_impl(f, x, p, opt(damp), opt(nxi), c);
    if (needs_grad({f, x, p, opt(damp), opt(nxi)})) {
        auto node = c10::make_intrusive<MomentumTailBackward>();
        node->set_next_edges(torch::autograd::collect_next_edges(f, x, p, opt(damp), opt(nxi)));
        node->f = SavedVariable(f, false), node->x = SavedVariable(x, false), node->p = SavedVariable(p, false);
        node->damp = SavedVariable(opt(damp), false), node->nxi = SavedVariable(opt(nxi), false);
        node->c = c;
        const c10::intrusive_ptr<Node> grad_fn = node;
        for (Tensor* out : {&o1, &o2}) torch::autograd::set_history(*out, grad_fn);
    }
    return {o1, o2};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> momentum_backward(
        const Tensor& f, const Tensor& x, const Tensor& p, const std::optional<Tensor>& damp,
        const std::optional<Tensor>& nxi, const Tensor& c1, const Tensor& c2, double hs, double r, double dr,
        int64_t sign, int64_t gate, double lo, double hi, int64_t f_gate, double f_lo, double f_hi) {
    Momentum c{r, dr, hs, double(sign), gate, f_gate, lo, hi, f_lo, f_hi};
    return momentum_backward_impl(f, x, p, opt(damp), opt(nxi), c1, c2, c);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.def("adam_tail", &adam_tail);
    m.def("adam_backward", &adam_backward);
    m.def("momentum_tail", &momentum_tail);
    m.def("momentum_backward", &momentum_backward);
}
