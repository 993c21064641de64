"""The report's slice viewer in headless Chromium (Playwright): a click on a voxel shows
that voxel's MNI coordinates, z value and network, checked against the NIfTI files; the
threshold slider shows as many voxels as the map has above it."""

import os
import re
import shutil

import nibabel as nib
import numpy as np
import pytest

import cortexflow

# As scripts/install-browser's Chromium is started by the Rust report test.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"]
READOUT = re.compile(r"MNI \(x, y, z\) = \((\S+), (\S+), (\S+)\) mm · voxel \[(\d+), (\d+), (\d+)\] · group z (\S+) · network (\S+)")


def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        chromium = None
    if chromium is None:
        if os.environ.get("CORTEXFLOW_REQUIRE_BROWSER") == "1":
            pytest.fail("Chromium or Playwright missing: run scripts/install-browser and pip install -r scripts/requirements-test.txt")
        pytest.skip("Chromium or Playwright missing")
    return sync_playwright, chromium


@pytest.fixture(scope="module")
def page(analysis, tmp_path_factory):
    sync_playwright, chromium = browser()
    html = cortexflow.report(analysis["api"], tmp_path_factory.mktemp("report") / "report.html")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=FLAGS)
        pg = b.new_page(viewport={"width": 1200, "height": 900})
        errors = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.goto(html.as_uri())
        pg.wait_for_function("document.body.dataset.figures !== 'pending'")
        assert pg.evaluate("document.body.dataset.figures").startswith("ok:"), errors
        assert errors == []
        yield pg
        b.close()


def shown(page, figure):
    text = figure.locator("output.readout").text_content()
    m = READOUT.fullmatch(text)
    assert m, text
    return [float(v) for v in m.groups()[:3]], [int(v) for v in m.groups()[3:6]], float(m.group(7)), m.group(8)


def click_voxel(figure, panel, ijk, affine, shape):
    """Clicks the middle of voxel `ijk` in a panel, placed as the report promises: world
    coordinates increase to the right and upwards."""
    u, v = {"axial": (0, 1), "sagittal": (1, 2), "coronal": (0, 2)}[panel]
    canvas = figure.locator(f"canvas.{panel}")
    scale = canvas.evaluate("c => c.width") / shape[u]
    column = ijk[u] if affine[u, u] > 0 else shape[u] - 1 - ijk[u]
    row_up = ijk[v] if affine[v, v] > 0 else shape[v] - 1 - ijk[v]
    canvas.click(position={"x": (column + 0.5) * scale, "y": (shape[v] - 1 - row_up + 0.5) * scale})


def test_a_click_shows_the_voxel_of_the_nifti(page, analysis):
    store = analysis["api"]
    z_img = store.group_map("z")
    z = np.asarray(z_img.dataobj)
    affine = z_img.affine
    shape = z.shape[:3]
    mask = np.asarray(store.mask().dataobj) != 0
    atlas = next((store.path / "map" / "atlas").glob("*.nii.gz"))
    labels = np.asarray(nib.load(atlas).dataobj)
    atom = 1
    figure = page.locator(f'figure.viewer[data-atom="{atom}"]')
    cut = [int(c) for c in figure.get_attribute("data-cut").split(",")]
    # A voxel of the axial slice through the cut, then one of the sagittal slice through it.
    candidates = np.argwhere(mask[:, :, cut[2]])
    target = [*candidates[len(candidates) // 3], cut[2]]
    click_voxel(figure, "axial", target, affine, shape)
    after = [target[0], *np.argwhere(mask[target[0]])[len(np.argwhere(mask[target[0]])) // 2]]
    for panel, ijk in [("axial", target), ("sagittal", after)]:
        if panel == "sagittal":
            click_voxel(figure, panel, ijk, affine, shape)
        xyz, voxel, value, network = shown(page, figure)
        assert voxel == [int(c) for c in ijk], panel
        np.testing.assert_allclose(xyz, (affine @ [*ijk, 1])[:3], atol=0.05)
        # Shown to 3 decimals.
        assert abs(value - z[tuple(ijk) + (atom,)]) <= 0.0005 + 1e-9
        label = int(labels[tuple(ijk)])
        assert network.startswith(f"{label}_") if label else network == "none"


def test_the_threshold_slider_shows_the_voxels_above_it(page, analysis):
    z = np.asarray(analysis["api"].group_map("z").dataobj)
    mask = np.asarray(analysis["api"].mask().dataobj) != 0
    atom = 0
    figure = page.locator(f'figure.viewer[data-atom="{atom}"]')
    slider = figure.locator("input.threshold")
    for threshold in ["2.5", "4"]:
        slider.evaluate("(e, v) => { e.value = v; e.dispatchEvent(new Event('input')); }", threshold)
        values = z[..., atom][mask]
        want = int(((np.abs(values) >= np.float32(threshold)) & (values != 0)).sum())
        assert figure.locator(".count").get_attribute("data-voxels") == str(want)
        assert figure.locator(".count").text_content() == f"{want} voxels shown"
