"""EDM's non-leaking augmentation: label layout, P = 0, no leak, each transform on known images."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from deep.augment import (  # noqa: E402
    AUGMENT_DIM,
    AugmentParams,
    AugmentPipe,
    apply,
    paper_default,
)
from deep.edm import EDMPrecond  # noqa: E402
from deep.methods import EDMMethod  # noqa: E402
from deep.unet import UNetConfig, official_layout  # noqa: E402
from stability.stats import binomial_interval, mean_interval  # noqa: E402


def _params(n=1, **values):
    base = AugmentParams.identity(n)
    fields = {f: getattr(base, f) for f in AugmentParams.__dataclass_fields__}
    for k, v in values.items():
        fields[k] = torch.full((n,), float(v), dtype=torch.float64)
    return AugmentParams(**fields)


# ---- label layout ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cifar10-32x32-uncond-ddpmpp", "ffhq-64x64-uncond-ddpmpp"])
def test_labels_have_the_width_of_the_official_augment_input(name):
    # map_augment is Linear(augment_dim -> model_channels) without bias: weight (128, 9).
    assert official_layout(name)["model.map_augment.weight"] == (128, AUGMENT_DIM)
    gen = torch.Generator().manual_seed(0)
    _, labels = AugmentPipe(0.5)(torch.zeros(6, 3, 8, 8), gen, 6, slice(0, 6))
    assert labels.shape == (6, 9) and labels.dtype == torch.float32


def test_label_columns_follow_the_documented_layout():
    a, w_s, w_a, r, w_x, w_y = 0.7, -0.4, 1.3, 2.1, 0.25, -1.5
    p = _params(flip_x=1, flip_y=1, scale=w_s, angle=a, aniso=w_a, aniso_angle=r)
    p = AugmentParams(
        **{**p.__dict__, "shift_x": torch.tensor([w_x]), "shift_y": torch.tensor([w_y])}
    )
    expected = [
        1,
        1,
        w_s,
        math.cos(a) - 1,
        math.sin(a),
        w_a * math.cos(r),
        w_a * math.sin(r),
        w_x,
        w_y,
    ]
    assert p.labels()[0].tolist() == pytest.approx(expected, abs=1e-6)
    assert torch.equal(AugmentParams.identity(4).labels(), torch.zeros(4, 9))


def test_labels_reach_the_network():
    """EDMPrecond of a network with augment_dim 9 feeds the labels through map_augment: the
    output moves with them, and zero labels equal no labels."""
    torch.manual_seed(0)
    cfg = UNetConfig(8, 1, 16, (1, 2), 4, 1, (4,), 0.0, AUGMENT_DIM)
    net = EDMPrecond(cfg).eval()
    with torch.no_grad():  # layers initialised near zero (scale 1e-5) hide the embedding
        for name, w in net.named_parameters():
            if name.endswith("weight") and w.abs().max() < 1e-3:
                w.normal_(0, 0.2)
        x, sigma = torch.randn(3, 1, 8, 8), torch.full((3,), 0.7)
        plain = net(x, sigma)
        zero = net(x, sigma, torch.zeros(3, 9))
        moved = net(x, sigma, torch.eye(9)[:3])
    assert torch.allclose(plain, zero, atol=1e-6)
    assert (moved - plain).abs().amax(dim=(1, 2, 3)).min() > 1e-3


def test_paper_defaults():
    assert paper_default("cifar10=/data/cifar", "edm") == 0.12
    assert paper_default("ffhq=/data/ffhq.zip", "edm") == 0.15
    assert paper_default("digits:16", "edm") == 0.0
    assert paper_default("cifar10=/data", "otcfm") == paper_default("cifar10=/x", "ddpm") == 0.0


# ---- P = 0 and no leak -----------------------------------------------------------------------


def test_probability_zero_changes_nothing():
    images = torch.rand(64, 3, 8, 8)
    gen = torch.Generator().manual_seed(1)
    out, labels = AugmentPipe(0.0)(images, gen, 64, slice(0, 64))
    assert torch.equal(out, images) and not labels.any()
    # In training, P = 0 means no pipeline: the loss consumes the stream exactly as before.
    x = torch.rand(4, 1, 8, 8) * 2 - 1

    def net(xn, sigma, labels=None):
        assert labels is None
        return xn * 0.5

    losses = [
        m.loss(net, x, torch.Generator().manual_seed(3), 4, slice(0, 4))
        for m in (EDMMethod(), EDMMethod(augment=0.0))
    ]
    assert torch.equal(losses[0], losses[1])


def test_zero_labels_select_the_data_distribution():
    """Non-leaking: an augmented image whose labels are all zero is distributed as the data.

    K distinct asymmetric images drawn uniformly, augmented with P = 0.6. Among the rows with
    all-zero labels (i) every image is one of the data images, pixel for pixel, (ii) the share
    of such rows is P(x-flip coin 0) P(no y-flip) P(no geometric transform) = 1/2 (1 - P/2)
    (1 - P)^4, within a 99.9% interval, and (iii) the data images appear with equal
    frequencies (chi-square test at level 0.001). Rows with labels (1, 0, ..., 0) are the
    mirrored data images.
    """
    from scipy.stats import chisquare

    k, n, p = 5, 40_000, 0.6
    rng = np.random.default_rng(0)
    data = torch.from_numpy(rng.uniform(-1, 1, size=(k, 1, 8, 8)))
    which = torch.from_numpy(rng.integers(0, k, size=n))
    out, labels = AugmentPipe(p)(data[which], torch.Generator().manual_seed(5), n, slice(0, n))
    zero = ~labels.any(dim=1)
    expected_share = 0.5 * (1 - p / 2) * (1 - p) ** 4
    assert binomial_interval(int(zero.sum()), n, 0.999).contains(expected_share)
    assert torch.equal(out[zero], data[which[zero]])
    counts = np.bincount(which[zero].numpy(), minlength=k)
    assert chisquare(counts).pvalue > 1e-3
    flipped = (labels[:, 0] == 1) & ~labels[:, 1:].any(dim=1)
    assert flipped.sum() > 100
    assert torch.equal(out[flipped], data[which[flipped]].flip(3))
    # And the pipeline does augment: rows with a geometric label differ from their source.
    moved = labels[:, 2:].abs().sum(1) > 0.1
    assert (out[moved] - data[which[moved]]).abs().amax(dim=(1, 2, 3)).min() > 1e-3


def test_parameters_follow_their_distributions():
    """Each transform is on with probability P (x-flip: a coin for every image); w_s, w_a, w_x,
    w_y ~ N(0, 1) and a ~ U(-pi, pi) when on."""
    n, p = 50_000, 0.3
    par = AugmentPipe(p).draw(torch.Generator().manual_seed(2), n)
    share = {
        "flip_x": (par.flip_x.numpy(), 0.5),
        "flip_y": (par.flip_y.numpy(), p / 2),
        "scale": (par.scale.numpy() != 0, p),
        "angle": (par.angle.numpy() != 0, p),
        "aniso": (par.aniso.numpy() != 0, p),
        "shift": (par.shift_x.numpy() != 0, p),
    }
    for name, (x, expected) in share.items():
        assert binomial_interval(int(x.sum()), n, 0.999, len(share)).contains(expected), name
    for name in ("scale", "aniso", "shift_x", "shift_y"):
        v = getattr(par, name).numpy()
        v = v[v != 0]
        assert mean_interval(v, 0.999, 9).contains(0.0), name
        assert mean_interval(v**2, 0.999, 9).contains(1.0), name
    a = par.angle.numpy()
    a = a[a != 0]
    assert np.abs(a).max() <= math.pi and mean_interval(a**2, 0.999, 9).contains(math.pi**2 / 3)
    assert torch.equal(par.shift_x != 0, par.shift_y != 0)  # one translation, both axes


# ---- each transform on a known image -------------------------------------------------------


def _blobs(x, y):
    """A smooth asymmetric picture as a function of centred coordinates (x right, y down)."""
    return np.exp(-((x - 3) ** 2 + (y + 2) ** 2) / 32) - 0.7 * np.exp(
        -((x + 4) ** 2 / 24 + (y - 4) ** 2 / 60)
    )


def _render(size=32, inverse=None):
    c = (size - 1) / 2
    y, x = np.mgrid[:size, :size].astype(float)
    x, y = x - c, y - c
    if inverse is not None:
        m = inverse
        x, y = m[0, 0] * x + m[0, 1] * y + m[0, 2], m[1, 0] * x + m[1, 1] * y + m[1, 2]
    return torch.from_numpy(_blobs(x, y))[None, None]


def _forward(scale=0.0, angle=0.0, aniso=0.0, r=0.0, sx=0.0, sy=0.0, size=32):
    """The transform named by the labels, written from the docstring's words (not the code):
    magnify by 2^(0.2 w_s), rotate counter-clockwise as displayed by a, stretch by 2^(0.2 w_a)
    along the direction at angle r (counter-clockwise) and squeeze across, then move right and
    down by 0.125 size (w_x, w_y). Returns the 3x3 map of centred coordinates (y down)."""
    s, sa = 2 ** (0.2 * scale), 2 ** (0.2 * aniso)
    ccw = np.array([[math.cos(angle), math.sin(angle)], [-math.sin(angle), math.cos(angle)]])
    u = np.array([math.cos(r), -math.sin(r)])  # angle r counter-clockwise with y down
    v = np.array([math.sin(r), math.cos(r)])
    stretch = sa * np.outer(u, u) + np.outer(v, v) / sa
    m = np.eye(3)
    m[:2, :2] = stretch @ ccw @ (s * np.eye(2))
    m[:2, 2] = [0.125 * size * sx, 0.125 * size * sy]
    return m


@pytest.mark.parametrize(
    "values",
    [
        dict(scale=1.0),
        dict(scale=-1.5),
        dict(angle=0.7),
        dict(angle=-2.5),
        dict(aniso=1.5, r=0.4),
        dict(aniso=-1.0, r=2.0),
        dict(sx=0.6, sy=-0.4),
        dict(scale=0.5, angle=1.1, aniso=0.8, r=-1.2, sx=-0.3, sy=0.2),
    ],
    ids=lambda v: ",".join(f"{k}={x:g}" for k, x in v.items()),
)
def test_each_geometric_transform_is_the_one_its_label_names(values):
    """The augmented picture equals the picture evaluated at G^-1 p (bicubic interpolation
    error of a smooth picture, measured below 4e-3; a wrong sign or order errs by ~0.1 to 1)."""
    names = dict(
        scale="scale", angle="angle", aniso="aniso", r="aniso_angle", sx="shift_x", sy="shift_y"
    )
    params = _params(**{names[k]: v for k, v in values.items()})
    out = apply(_render(), params, AugmentPipe(0.5))
    expected = _render(inverse=np.linalg.inv(_forward(**values)))
    inner = (slice(None), slice(None), slice(6, -6), slice(6, -6))  # away from mirrored borders
    assert (out - expected)[inner].abs().max() < 0.025


def test_exact_pixel_transforms_and_inverses():
    img = _render()
    pipe = AugmentPipe(0.5)
    assert torch.equal(apply(img, _params(flip_x=1), pipe), img.flip(3))
    assert torch.equal(apply(img, _params(flip_y=1), pipe), img.flip(2))
    both = apply(apply(img, _params(flip_x=1, flip_y=1), pipe), _params(flip_x=1, flip_y=1), pipe)
    assert torch.equal(both, img)
    # A quarter turn counter-clockwise lands every pixel centre on a pixel centre: torch.rot90.
    quarter = apply(img, _params(angle=math.pi / 2), pipe)
    assert torch.allclose(quarter, torch.rot90(img, 1, dims=(2, 3)), atol=1e-6)
    # A translation by whole pixels (3 right, 2 up of 32: w = 3 / 4, -2 / 4) is a shift.
    shifted = apply(img, _params(shift_x=0.75, shift_y=-0.5), pipe)
    assert torch.allclose(shifted[..., 4:-4, 4:-4], img[..., 6:-2, 1:-7], atol=1e-6)
    # Rotating by a then by -a, or scaling by w then -w, gives the picture back, up to twice the
    # bicubic interpolation error (measured 0.025 inside the borders; rotating by a twice
    # instead errs by 1.1, scaling by w twice by 0.31).
    for a, b in ((dict(angle=0.9), dict(angle=-0.9)), (dict(scale=1.0), dict(scale=-1.0))):
        back = apply(apply(img, _params(**a), pipe), _params(**b), pipe)
        assert (back - img)[..., 8:-8, 8:-8].abs().max() < 0.04


def test_the_slice_of_a_process_gets_its_part_of_the_global_batch():
    images = torch.rand(8, 1, 8, 8)
    pipe = AugmentPipe(0.7)
    full, lab = pipe(images, torch.Generator().manual_seed(4), 8, slice(0, 8))
    part, lab2 = pipe(images[4:], torch.Generator().manual_seed(4), 8, slice(4, 8))
    assert torch.equal(full[4:], part) and torch.equal(lab[4:], lab2)


def test_edm_loss_trains_on_augmented_images_with_their_labels():
    seen = {}

    def net(xn, sigma, labels=None):
        seen["labels"] = labels
        return xn

    x = torch.rand(16, 1, 8, 8) * 2 - 1
    EDMMethod(augment=0.5).loss(net, x, torch.Generator().manual_seed(0), 16, slice(0, 16))
    expected = AugmentPipe(0.5).draw(torch.Generator().manual_seed(0), 16).labels()
    assert torch.equal(seen["labels"], expected) and seen["labels"].any()
    with pytest.raises(ValueError, match="augmentation inputs"):
        EDMMethod(augment=0.1).build(UNetConfig.tiny(8, 1))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        AugmentPipe(1.5)
