"""The FID Inception-v3 (the TF-ported network pytorch-fid uses), 2048-d pool features.

Module names follow torchvision's Inception3, so the standard FID weights file
(`pt_inception-2015-12-05-*.pth`, a state dict) loads as is. The FID variant differs from the
classification network in its pooling: average pools exclude padding, and the last block uses a
max pool — without these the features (and every FID) are off.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import JudgeError
from .spec import JudgeEnv, JudgeSpec

FEATURE_DIM = 2048


def build_fid_inception():
    import torch
    import torch.nn.functional as F
    from torch import nn

    class BasicConv2d(nn.Module):
        def __init__(self, cin, cout, **kw):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, bias=False, **kw)
            self.bn = nn.BatchNorm2d(cout, eps=0.001)

        def forward(self, x):
            return F.relu(self.bn(self.conv(x)))

    def avg3(x):
        return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)

    class InceptionA(nn.Module):
        def __init__(self, cin, pool_features):
            super().__init__()
            self.branch1x1 = BasicConv2d(cin, 64, kernel_size=1)
            self.branch5x5_1 = BasicConv2d(cin, 48, kernel_size=1)
            self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
            self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
            self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
            self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
            self.branch_pool = BasicConv2d(cin, pool_features, kernel_size=1)

        def forward(self, x):
            b5 = self.branch5x5_2(self.branch5x5_1(x))
            b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
            return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(avg3(x))], 1)

    class InceptionB(nn.Module):
        def __init__(self, cin):
            super().__init__()
            self.branch3x3 = BasicConv2d(cin, 384, kernel_size=3, stride=2)
            self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
            self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
            self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

        def forward(self, x):
            b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
            return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, 3, stride=2)], 1)

    class InceptionC(nn.Module):
        def __init__(self, cin, c7):
            super().__init__()
            self.branch1x1 = BasicConv2d(cin, 192, kernel_size=1)
            self.branch7x7_1 = BasicConv2d(cin, c7, kernel_size=1)
            self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
            self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
            self.branch7x7dbl_1 = BasicConv2d(cin, c7, kernel_size=1)
            self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
            self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
            self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
            self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
            self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

        def forward(self, x):
            b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
            d = x
            for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3,
                          self.branch7x7dbl_4, self.branch7x7dbl_5):
                d = layer(d)
            return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(avg3(x))], 1)

    class InceptionD(nn.Module):
        def __init__(self, cin):
            super().__init__()
            self.branch3x3_1 = BasicConv2d(cin, 192, kernel_size=1)
            self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
            self.branch7x7x3_1 = BasicConv2d(cin, 192, kernel_size=1)
            self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
            self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
            self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

        def forward(self, x):
            b3 = self.branch3x3_2(self.branch3x3_1(x))
            b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
            return torch.cat([b3, b7, F.max_pool2d(x, 3, stride=2)], 1)

    class InceptionE(nn.Module):
        def __init__(self, cin, max_pool: bool):
            super().__init__()
            self.max_pool = max_pool
            self.branch1x1 = BasicConv2d(cin, 320, kernel_size=1)
            self.branch3x3_1 = BasicConv2d(cin, 384, kernel_size=1)
            self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
            self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
            self.branch3x3dbl_1 = BasicConv2d(cin, 448, kernel_size=1)
            self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
            self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
            self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
            self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

        def forward(self, x):
            b3 = self.branch3x3_1(x)
            b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
            d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
            d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
            pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else avg3(x)
            return torch.cat([self.branch1x1(x), b3, d, self.branch_pool(pooled)], 1)

    class FidInceptionV3(nn.Module):
        def __init__(self):
            super().__init__()
            self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
            self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
            self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
            self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
            self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
            self.Mixed_5b = InceptionA(192, 32)
            self.Mixed_5c = InceptionA(256, 64)
            self.Mixed_5d = InceptionA(288, 64)
            self.Mixed_6a = InceptionB(288)
            self.Mixed_6b = InceptionC(768, 128)
            self.Mixed_6c = InceptionC(768, 160)
            self.Mixed_6d = InceptionC(768, 160)
            self.Mixed_6e = InceptionC(768, 192)
            self.Mixed_7a = InceptionD(768)
            self.Mixed_7b = InceptionE(1280, max_pool=False)
            self.Mixed_7c = InceptionE(2048, max_pool=True)
            self.fc = nn.Linear(2048, 1008)  # present in the FID weights; unused for features

        def forward(self, images01):
            """[N, 3, H, W] in [0, 1] → [N, 2048] pool features."""
            x = F.interpolate(images01, size=(299, 299), mode="bilinear", align_corners=False)
            x = 2 * x - 1
            x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
            x = F.max_pool2d(x, 3, stride=2)
            x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
            x = F.max_pool2d(x, 3, stride=2)
            for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                          self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
                x = block(x)
            return F.adaptive_avg_pool2d(x, 1).flatten(1)

    return FidInceptionV3()


class InceptionFeatures:
    """2048-d FID features of RGB uint8 images."""

    name = "inception"

    def __init__(self, weights: str | None, random_init_seed: int | None, device: str = "cpu", batch_size: int = 16):
        import torch

        self.weights = weights
        self.random_init_seed = random_init_seed
        self.device = device
        self.batch_size = batch_size
        if weights is None:
            # The random demo network draws from torch's global stream (the layers' default init
            # takes no generator), so it draws inside fork_rng: seeded here, and the caller's
            # random state is as it was afterwards.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(random_init_seed or 0))
                model = build_fid_inception()
                # torch's default init shrinks activations ~10x per block (features ~1e-8);
                # He init keeps them O(1), so a demo FID is at least numerically meaningful.
                for m in model.modules():
                    if isinstance(m, torch.nn.Conv2d):
                        torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        else:
            model = build_fid_inception()
            self._load(model, Path(weights))
        self.model = model.eval().to(device)

    @staticmethod
    def _load(model, path: Path) -> None:
        from ..models import read_tensor_file

        try:
            sd = read_tensor_file(path)
        except ValueError as err:
            raise JudgeError(f"cannot read FID Inception weights '{path}': {err} (the pt_inception-2015-12-05 "
                             "file is expected)") from None
        result = model.load_state_dict(sd, strict=False)
        missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
        if missing or result.unexpected_keys:
            raise JudgeError(
                f"'{path}' is not FID Inception weights: {len(missing)} missing, {len(result.unexpected_keys)} unexpected keys "
                f"(e.g. {(missing or result.unexpected_keys)[0]})"
            )

    def features(self, images: list[np.ndarray]) -> np.ndarray:
        """[N, 2048] float64; images may differ in size (each is resized to 299 on its own)."""
        import torch
        import torch.nn.functional as F

        def to_299(im: np.ndarray):
            x = torch.from_numpy(np.array(im, copy=True)).permute(2, 0, 1)[None].float() / 255.0
            return F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)

        out = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                x = torch.cat([to_299(im) for im in images[start:start + self.batch_size]]).to(self.device)
                out.append(self.model(x).double().cpu().numpy())
        return np.concatenate(out)


def identity(c, hasher) -> dict:
    """What determines the FID features (`c`: `judges.inception`), without building the network."""
    if c.onnx is not None:
        from .onnx_image_net import features_identity

        return features_identity(c.onnx, hasher)
    ident: dict = {"judge": "inception", "feature_dim": FEATURE_DIM, "resize": "bilinear-299"}
    if c.weights is not None:
        ident["weights_sha256"] = hasher.file(Path(c.weights))
    else:
        from importlib.metadata import version

        ident["random_init_seed"] = c.random_init_seed
        ident["torch"] = version("torch")  # random init depends on torch's initialisers
        ident["standard"] = False
    return ident


def build(c, env: JudgeEnv):
    """Inception-v3 (standard weights or the random demo init), or an ONNX feature network."""
    if c.onnx is not None:
        from .onnx_image_net import OnnxFeatures

        return OnnxFeatures(c.onnx, None, env.batch(c.batch_size), env.ort_threads)
    return InceptionFeatures(c.weights, c.random_init_seed, env.device, env.batch(c.batch_size))


SPEC = JudgeSpec("inception", "features", None, identity, build)
