"""Inverse problems: operator algebra (adjoints, SVDs, CT against scikit-image), solvers against the exact posterior of
a Gaussian prior, and `diffuse restore` end to end with its one-line errors."""

import numpy as np
import pytest
import torch
from cli_helpers import diffuse, one_line_error

from diffuse.inverse.baselines import _div, _grad
from diffuse.inverse.ct import CT
from diffuse.inverse.operators import MRI, Blur, Downsample, Inpaint, Operator, _dot, mri_mask
from diffuse.inverse.solvers import SOLVERS, Problem, ddrm, dps
from diffuse.samplers import get_sampler

SHAPE = (1, 12, 12)


def _ops(shape=SHAPE, sigma_y=0.0):
    g = torch.Generator().manual_seed(0)
    return [Inpaint(shape, torch.rand(shape, generator=g) > 0.5, sigma_y), Downsample(shape, 3, sigma_y), Blur(shape, 1.0, sigma_y),
            MRI(shape, 3, sigma_y), CT(shape, 6, sigma_y)]


def _rand_like_measurement(y, g):
    r = torch.randn(y.shape, generator=g, dtype=torch.float32)
    return torch.complex(r, torch.randn(y.shape, generator=g)) if y.is_complex() else r


@pytest.mark.parametrize("op", _ops(), ids=lambda o: o.name)
def test_adjoint_identity(op):
    """<A x, y> = <x, A^T y> for random x and y (complex measurements: the real inner product Re sum conj(a) b)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, *op.shape, generator=g)
    y = _rand_like_measurement(op.A(x), g)
    lhs, rhs = _dot(op.A(x), y), _dot(x, op.AT(y))
    assert torch.allclose(lhs, rhs, rtol=1e-5, atol=1e-5 * float(lhs.abs().max())), (lhs, rhs)


@pytest.mark.parametrize("op", _ops(), ids=lambda o: o.name)
def test_svd_is_a_decomposition_of_the_operator(op):
    """V is orthonormal (v(vt(x)) = x, norms kept) and ut(A x) = s * vt(x); the pseudo-inverse explains the measurement
    and the rho = 0 prox is a projection onto {A z = y}."""
    sp = op.svd()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, *op.shape, generator=g)
    c = sp.vt(x)
    assert torch.allclose(sp.v(c), x, atol=1e-5)
    assert torch.allclose(_dot(c, c), _dot(x, x), rtol=1e-5)
    assert torch.allclose(sp.ut(op.A(x)), sp.s * c, atol=1e-4 * float(c.abs().max()))
    y = op.A(torch.rand(3, *op.shape, generator=g))
    z = op.prox(x, y, 0.0)
    assert float(op.residual(z, y).max()) < 1e-3
    assert float(op.residual(op.pinv(y), y).max()) < 1e-3


def test_conjugate_gradient_fallback_matches_the_svd():
    """An operator without an SVD gets its pseudo-inverse and prox from CG: the same answers as the SVD's."""
    blur = Blur(SHAPE, 0.7)

    class NoSVD(Operator):
        def A(self, x):
            return blur.A(x)

        def AT(self, y):
            return blur.AT(y)

    plain = NoSVD(SHAPE)
    assert plain.svd() is None
    y = blur.A(torch.rand(2, *SHAPE, generator=torch.Generator().manual_seed(3)))
    d = torch.rand(2, *SHAPE, generator=torch.Generator().manual_seed(4))
    assert torch.allclose(plain.prox(d, y, 0.3, iters=200), blur.prox(d, y, 0.3), atol=1e-4)


def test_ct_matches_scikit_image_radon():
    """Our sparse Radon matrix is scikit-image's radon(circle=False) geometry, so iradon (FBP) applies to our sinograms."""
    from skimage.transform import radon

    op = CT((1, 20, 20), 10)
    x = torch.rand(1, 1, 20, 20, generator=torch.Generator().manual_seed(5))
    ref = radon(x[0, 0].double().numpy(), op.theta, circle=False).T  # [angles, D]
    assert op.A(x).shape == (1, 1, 10, op.detectors) and ref.shape == (10, op.detectors)
    assert np.abs(op.A(x)[0, 0].numpy() - ref).max() < 1e-4 * np.abs(ref).max()
    dense = CT((1, 20, 20), 90)
    r = torch.arange(20.0) - 9.5
    blob = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / 18)[None, None]  # a smooth image: FBP from 90 views recovers it
    assert float((dense.fbp(dense.A(blob)) - blob).abs().mean()) < 0.05 * float(blob.mean())


def test_mri_mask_is_symmetric_with_its_centre_and_rate():
    for r in (2, 4, 8):
        m = mri_mask(64, r, seed=3)
        k = torch.fft.fftfreq(64) * 64
        assert torch.equal(m, m[(-k).long() % 64])  # line k sampled iff line -k
        assert m[0] == 1 and m[1] == 1 and abs(float(m.sum()) - 64 / r) <= 1.0
    with pytest.raises(Exception, match="acceleration"):
        mri_mask(64, 1.0)


def test_tv_divergence_is_the_negative_adjoint_of_the_gradient():
    g = torch.Generator().manual_seed(6)
    x, p = torch.randn(2, 1, 7, 9, generator=g), torch.randn(2, 1, 2, 7, 9, generator=g)
    assert torch.allclose(_dot(_grad(x), p), -_dot(x, _div(p)), rtol=1e-5)


def _gaussian_prior(dim=16, seed=7):
    """A correlated Gaussian prior N(mu, C) on 1x4x4 images and its exact denoiser E[x0 | x0 + sigma n = x]."""
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(dim, dim, generator=g, dtype=torch.float64)
    cov = 0.15 * (m @ m.T / dim + 0.2 * torch.eye(dim, dtype=torch.float64))
    mu = 0.3 * torch.randn(dim, generator=g, dtype=torch.float64)

    def denoiser(x, sigma, cond=None):
        gain = cov @ torch.linalg.inv(cov + float(sigma[0]) ** 2 * torch.eye(dim, dtype=torch.float64))
        return (mu + (x.reshape(len(x), dim).double() - mu) @ gain.T).reshape(x.shape).to(x.dtype)

    return denoiser, mu, cov


@pytest.mark.parametrize("solver", ["ddrm", "dc", "diffpir", "dps"])
def test_solvers_match_the_exact_gaussian_posterior_for_inpainting(solver):
    """With the exact denoiser of a correlated Gaussian prior, the mean of 400 posterior samples for a noiseless masked
    measurement must be near the exact posterior mean E[x | y] = mu + C A^T (A C A^T)^-1 (y - A mu) (far nearer than the
    prior mean is), and the known pixels must be kept."""
    denoiser, mu, cov = _gaussian_prior()
    shape = (1, 4, 4)
    keep = torch.zeros(shape)
    keep[0, :, :2] = 1  # the left half is known
    op = Inpaint(shape, keep)
    g = torch.Generator().manual_seed(8)
    x = (mu + torch.linalg.cholesky(cov) @ torch.randn(16, generator=g, dtype=torch.float64)).float().reshape(1, *shape)
    y = op.A(x)
    a = torch.eye(16, dtype=torch.float64)[keep.flatten().nonzero().flatten()]  # [8, 16]
    exact = mu + cov @ a.T @ torch.linalg.solve(a @ cov @ a.T, a @ (x.flatten().double() - mu))
    k = 400
    sigmas = torch.tensor([80.0 * (0.002 / 80.0) ** (i / 59) for i in range(60)] + [0.0])
    prob = Problem(op, y.expand(k, *shape), 0.0)
    z = torch.randn(k, *shape, generator=g) * float(sigmas[0])
    if solver == "ddrm":
        out = ddrm(denoiser, z, sigmas, prob=prob, generator=g)
    elif solver == "dps":
        out = dps(get_sampler("ddpm"), denoiser, z, sigmas, prob=prob, zeta=0.2, generator=g)
    else:
        out = get_sampler("ddpm")(SOLVERS[solver].wrap(denoiser, prob, 1.0), z, sigmas, generator=g)
    est = out.double().mean(0).flatten()
    err, prior_err = (est - exact).norm(), (mu - exact).norm()
    assert err < 0.35 * prior_err, (float(err), float(prior_err))
    miss = (out * keep - y).abs()[:, keep.bool()]  # [k, 8] the known pixels' errors
    if solver == "dps":  # approximate: the gradient steps pull the known pixels near y (prior spread there: ~0.4)
        assert float(miss.mean()) < 0.05, float(miss.mean())
    else:  # DiffPIR's proximal step keeps rho > 0 (sigma_y floor 1e-3); DDRM and hard DC project exactly
        assert float(miss.max()) < (1e-2 if solver == "diffpir" else 1e-4), float(miss.max())


# -- `diffuse restore` on a trained digits model ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def digit_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("inverse") / "run"
    diffuse("train", "--data", "digits", "--cond", "class", "--steps", "600", "--out", run, "--sample-every", "100000")
    return run


@pytest.fixture(scope="module")
def digits_npz(tmp_path_factory):
    from diffuse.data import load_dataset

    path = tmp_path_factory.mktemp("inverse_in") / "digits.npz"
    np.savez(path, images=load_dataset("digits", "test").images[:48, 0].numpy())  # [N, H, W]: no channel axis
    return path


def _psnr(a, b):
    from diffuse.inverse.baselines import psnr

    return float(psnr(a, b).mean())


@pytest.mark.parametrize("operator,solver", [("inpaint", "ddrm"), ("mri", "ddrm"), ("mri", "dps"), ("superres", "dc")])
def test_a_trained_prior_beats_the_zero_filled_reconstruction(digit_run, operator, solver):
    """On real test digits, the diffusion solver's reconstruction is >= 1 dB nearer the truth than A^+ y (masked image,
    zero-filled MRI, nearest upsampling), with a small data-consistency residual."""
    from diffuse.data import load_dataset
    from diffuse.inverse.baselines import zero_filled
    from diffuse.inverse.io import OperatorSpec
    from diffuse.inverse.restore import RestoreConfig, restore
    from diffuse.model import load_model

    model, _ = load_model(digit_run)
    x = load_dataset("digits", "test").images[:48].float() / 255
    op = OperatorSpec(operator, acceleration=2.0, factor=2).build((1, 8, 8))
    y = op.measure(x)
    rec = restore(model, op, y, RestoreConfig(solver=solver, samples=2)).mean(0)
    base = _psnr(zero_filled(op, y), x)
    assert _psnr(rec, x) > base + 1.0, (_psnr(rec, x), base)
    assert float(op.residual(rec, y).mean()) < 0.1


def test_restore_cli_writes_a_checkable_file_and_takes_it_back(digit_run, digits_npz, tmp_path):
    """--out .npz holds the reconstruction in the input's shape, a std map, the measurement and the k-space mask: the
    zero-filled image and the residual follow from the file alone (numpy FFT); --measurements on that file reconstructs
    the same images; --out .png writes the 4-row grid."""
    out = tmp_path / "r.npz"
    r = diffuse("restore", digit_run, "--operator", "mri", "--acceleration", "2", "--input", digits_npz, "--out", out, "--samples", "3")
    assert "residual" in r.stdout and "PSNR" in r.stdout
    with np.load(out, allow_pickle=False) as z:
        f = {k: z[k] for k in z.files}
    assert f["reconstruction"].shape == (48, 8, 8) and f["std"].shape == (48, 8, 8) and f["samples"].shape == (3, 48, 8, 8)
    assert f["reconstruction"].min() >= 0 and f["reconstruction"].max() <= 1 and f["std"].max() > 0
    assert str(f["operator"]) == "mri" and f["mask"].shape == (8,)
    assert f["measurement"].shape == (48, 8, 8) and np.iscomplexobj(f["measurement"])
    kspace = np.fft.fft2(f["reconstruction"], norm="ortho") * f["mask"][:, None]
    res = np.linalg.norm((kspace - f["measurement"]).reshape(48, -1), axis=1) / np.linalg.norm(f["measurement"].reshape(48, -1), axis=1)
    assert np.allclose(res, f["residual"], atol=1e-4)
    zero_filled = np.fft.ifft2(f["measurement"], norm="ortho").real  # the baseline, from the file alone
    ours = MRI((1, 8, 8), mask=torch.from_numpy(f["mask"])).AT(torch.from_numpy(f["measurement"])[:, None])[:, 0]
    assert np.allclose(zero_filled, ours.numpy(), atol=1e-5)
    again = tmp_path / "again.npz"
    diffuse("restore", digit_run, "--operator", "mri", "--measurements", out, "--out", again, "--samples", "3")
    with np.load(again) as z:
        assert np.allclose(z["reconstruction"], f["reconstruction"], atol=1e-5)
    png = tmp_path / "grid.png"
    diffuse("restore", digit_run, "--operator", "ct", "--angles", "4", "--input", digits_npz, "--out", png, "--solver", "dc", "--steps", "10")
    from PIL import Image

    w, h = Image.open(png).size
    assert h == 4 * (8 * 8 + 2 * 8) + 2 * 8 and w == 48 * (64 + 16) + 16  # 4 rows of 48 images (8x upscaled, padding 2)


def test_restore_reads_dicom(digit_run, tmp_path):
    """A DICOM slice is read through pydicom (rescale applied, normalised, resized to the model's size) and restored;
    a DICOM without pixel data is one error line."""
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    def write(path, pixels):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = pydicom.uid.SecondaryCaptureImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID, "MR"
        if pixels is not None:
            ds.Rows, ds.Columns = pixels.shape
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
            ds.PixelData = pixels.astype(np.uint16).tobytes()
        ds.save_as(str(path), enforce_file_format=True)

    yy, xx = np.mgrid[:32, :32]
    write(tmp_path / "slice.dcm", 1000 * np.exp(-((yy - 16) ** 2 + (xx - 16) ** 2) / 60))
    r = diffuse("restore", digit_run, "--operator", "mri", "--input", tmp_path / "slice.dcm", "--out", tmp_path / "d.npz")
    assert "resized the input from 32x32" in r.stderr
    with np.load(tmp_path / "d.npz") as z:
        assert z["reconstruction"].shape == (1, 8, 8, 1)
    write(tmp_path / "empty.dcm", None)
    one_line_error(diffuse("restore", digit_run, "--operator", "mri", "--input", tmp_path / "empty.dcm", "--out", tmp_path / "e.npz",
                           check=False), "no pixel data")


def test_restore_bad_input_is_one_error_line(digit_run, digits_npz, tmp_path):
    import subprocess
    import sys

    from PIL import Image

    def run(*args):
        return diffuse("restore", digit_run, "--input", digits_npz, "--out", tmp_path / "o.npz", *args, check=False)

    one_line_error(run("--operator", "mri", "--acceleration", "1"), "--acceleration must be > 1")
    one_line_error(run("--operator", "mri", "--acceleration", "0.5"), "--acceleration must be > 1")
    one_line_error(run("--operator", "sinogram"), "unknown operator")
    one_line_error(run("--operator", "mri", "--solver", "magic"), "unknown solver")
    one_line_error(run("--operator", "mri", "--samples", "0"), "--samples")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "m.png")
    one_line_error(run("--operator", "inpaint", "--mask", tmp_path / "m.png"), "the mask is 10x10")
    # measurements that do not fit the operator: a 4-view sinogram read as 6 views; an MRI mask for 12-row images
    diffuse("restore", digit_run, "--operator", "ct", "--angles", "4", "--input", digits_npz, "--out", tmp_path / "ct.npz",
            "--solver", "dc", "--steps", "2")
    one_line_error(diffuse("restore", digit_run, "--operator", "ct", "--angles", "6", "--measurements", tmp_path / "ct.npz",
                           "--out", tmp_path / "o.npz", check=False), "measures")
    one_line_error(diffuse("restore", digit_run, "--operator", "mri", "--measurements", tmp_path / "ct.npz", "--out", tmp_path / "o.npz",
                           check=False), "holds ct measurements")
    np.savez(tmp_path / "mri12.npz", measurement=np.zeros((2, 12, 12), np.complex64), mask=np.ones(12, np.float32))
    one_line_error(diffuse("restore", digit_run, "--operator", "mri", "--measurements", tmp_path / "mri12.npz", "--out", tmp_path / "o.npz",
                           check=False), "12 lines")
    # a solver that cannot run here: DDRM where the operator has no SVD (CT above the dense-SVD size, forced to 0 pixels)
    code = "import sys, diffuse.inverse.ct as c; c.MAX_SVD_PIXELS = 0; from diffuse.cli import main; sys.exit(main(sys.argv[1:]))"
    r = subprocess.run([sys.executable, "-c", code, "restore", str(digit_run), "--operator", "ct", "--input", str(digits_npz), "--out",
                        str(tmp_path / "o.npz"), "--solver", "ddrm"], capture_output=True, text=True)
    one_line_error(r, "needs the operator's SVD")
    assert not (tmp_path / "o.npz").exists()
