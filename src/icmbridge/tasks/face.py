"""Face detection with MTCNN (facenet-pytorch): the one pretrained task network installed offline.

MTCNN is a cascade: PNet, a tiny fully-convolutional net, scans an image pyramid and proposes
12×12-cell face candidates (a face probability and four box-regression offsets per cell, stride
2); RNet (24×24 input) and ONet (48×48) re-score and refine crops of those candidates.

The differentiable loss mirrors that cascade (Le et al. train their codec with the task network's
own signal, not with pixels):

* **PNet term** at each pyramid scale ``s`` (faces of about 12/s px): MSE between the face
  probability maps of x̂ and x, plus MSE between the regression maps weighted by x's face
  probability (the offsets only mean something where there is a face), plus optionally an MSE on
  PNet's last feature map;
* **refinement term**: the candidates PNet finds in x (top ``max_candidates`` per image after NMS)
  are cropped from x̂ and x with differentiable ``roi_align`` to 24² and 48², and RNet's and ONet's
  probabilities and offsets on x̂ are pulled towards those on x.

With ground-truth boxes the same pieces are supervised instead (MTCNN's own training recipe):
PNet cells whose 12/s box overlaps a face with IoU ≥ 0.65 are positives, < 0.3 negatives
(cross-entropy, the rest ignored); RNet/ONet see crops of the true boxes and are trained to say
"face" with zero box offset.

Detection (``predict``) runs the full facenet-pytorch MTCNN on the images rounded to 8 bits, as a
deployed detector would see decoded images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import batched_nms, box_iou, roi_align

from icmbridge.tasks.base import MachineTask, check_images, freeze


def _normalise(x: Tensor) -> Tensor:
    """[0,1] images to MTCNN's input range: (255·x − 127.5) / 128."""
    return (x * 255.0 - 127.5) * 0.0078125


def _pnet(pnet: nn.Module, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """PNet forward that also returns its last feature map: (reg (B,4,h,w), prob (B,h,w), feat)."""
    h = pnet.prelu1(pnet.conv1(x))
    h = pnet.pool1(h)
    h = pnet.prelu2(pnet.conv2(h))
    feat = pnet.prelu3(pnet.conv3(h))
    prob = torch.softmax(pnet.conv4_1(feat), dim=1)[:, 1]
    return pnet.conv4_2(feat), prob, feat


def _cell_boxes(h: int, w: int, scale: float, device: torch.device) -> Tensor:
    """Image-space xyxy boxes of the (h, w) PNet output cells at ``scale`` (stride 2, 12-px)."""
    ys, xs = torch.meshgrid(
        torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij"
    )
    x1, y1 = 2.0 * xs / scale, 2.0 * ys / scale
    return torch.stack([x1, y1, x1 + 12.0 / scale, y1 + 12.0 / scale], dim=-1).view(-1, 4).float()


def _square(boxes: Tensor) -> Tensor:
    """MTCNN's ``rerec``: grow boxes to squares around their centres."""
    c = (boxes[:, :2] + boxes[:, 2:]) / 2
    side = (boxes[:, 2:] - boxes[:, :2]).max(dim=1, keepdim=True).values
    return torch.cat([c - side / 2, c + side / 2], dim=1)


class FaceTask(MachineTask):
    """MTCNN face detection as a machine task (class-agnostic boxes, COCO AP)."""

    name = "face"
    class_agnostic = True

    def __init__(
        self,
        scales: tuple[float, ...] = (0.6, 0.3, 0.15),
        min_face_size: int = 15,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        candidate_threshold: float = 0.6,
        max_candidates: int = 4,
        refine_weight: float = 1.0,
        feature_weight: float = 0.0,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        from facenet_pytorch import MTCNN  # weights ship inside the wheel: no download

        self.mtcnn = MTCNN(
            keep_all=True,
            min_face_size=min_face_size,
            thresholds=list(thresholds),
            post_process=False,
            device="cpu",
        )
        freeze(self.mtcnn)
        self.pnet, self.rnet, self.onet = self.mtcnn.pnet, self.mtcnn.rnet, self.mtcnn.onet
        self.scales = tuple(float(s) for s in scales)
        self.candidate_threshold = candidate_threshold
        self.max_candidates = max_candidates
        self.refine_weight = refine_weight
        self.feature_weight = feature_weight
        if device is not None:
            self.to(device)

    def modules(self) -> list[nn.Module]:
        return [self.mtcnn]

    def to(self, device: torch.device | str) -> FaceTask:
        super().to(device)
        self.mtcnn.device = self.device
        return self

    # -- pyramid ---------------------------------------------------------------------------------
    def _pyramid(self, x: Tensor) -> list[tuple[float, Tensor]]:
        """MTCNN-normalised images at each scale (area resampling, as MTCNN; differentiable)."""
        h, w = x.shape[-2:]
        out = []
        for s in self.scales:
            size = (int(h * s + 1), int(w * s + 1))
            if min(size) < 12:
                continue
            xs = x if s == 1.0 else F.interpolate(x, size=size, mode="area")
            out.append((s, _normalise(xs)))
        return out

    def _candidates(self, maps: list[tuple[float, Tensor, Tensor]], batch: int) -> list[Tensor]:
        """Top PNet candidates per image (square xyxy boxes, regression applied), from x's maps."""
        boxes, scores, idx = [], [], []
        for s, reg, prob in maps:
            b, h, w = prob.shape
            cells = _cell_boxes(h, w, s, prob.device)
            for i in range(b):
                p = prob[i].reshape(-1)
                keep = p >= self.candidate_threshold
                if not keep.any():
                    continue
                c = cells[keep]
                r = reg[i].reshape(4, -1)[:, keep].t()
                side = c[:, 2:] - c[:, :2]
                c = torch.cat([c[:, :2] + r[:, :2] * side, c[:, 2:] + r[:, 2:] * side], dim=1)
                boxes.append(_square(c))
                scores.append(p[keep])
                idx.append(torch.full((len(c),), i, device=c.device))
        if not boxes:
            return [torch.zeros(0, 4, device=maps[0][1].device) for _ in range(batch)]
        boxes_t, scores_t, idx_t = torch.cat(boxes), torch.cat(scores), torch.cat(idx)
        keep = batched_nms(boxes_t, scores_t, idx_t, 0.5)  # sorted by score
        per_image = []
        for i in range(batch):
            k = keep[idx_t[keep] == i][: self.max_candidates]
            per_image.append(boxes_t[k])
        return per_image

    def _refine(self, x: Tensor, boxes: list[Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """RNet and ONet (reg, prob) on crops of ``boxes`` from x ([0,1] images)."""
        xn = _normalise(x)
        r_reg, r_prob = self.rnet(roi_align(xn, boxes, (24, 24), 1.0, 2, aligned=True))
        o_reg, _, o_prob = self.onet(roi_align(xn, boxes, (48, 48), 1.0, 2, aligned=True))
        return r_reg, r_prob[:, 1], o_reg, o_prob[:, 1]

    # -- losses ----------------------------------------------------------------------------------
    def loss(self, x_hat: Tensor, x: Tensor, targets: list[dict] | None = None) -> Tensor:
        check_images(x_hat, "x_hat")
        if targets is not None:
            return self._supervised_loss(x_hat, targets)
        check_images(x, "x")
        with torch.no_grad():
            teacher = [(s, *_pnet(self.pnet, xs)) for s, xs in self._pyramid(x)]
        total = x_hat.new_zeros(())
        for (_s, xs), (_, t_reg, t_prob, t_feat) in zip(self._pyramid(x_hat), teacher, strict=True):
            reg, prob, feat = _pnet(self.pnet, xs)
            total = total + F.mse_loss(prob, t_prob)
            w = t_prob.unsqueeze(1)
            total = total + ((reg - t_reg).pow(2) * w).sum() / (4 * w.sum()).clamp_min(1.0)
            if self.feature_weight:
                total = total + self.feature_weight * F.mse_loss(feat, t_feat)
        total = total / max(len(teacher), 1)
        if self.refine_weight and teacher:
            boxes = self._candidates([(s, r, p) for s, r, p, _ in teacher], x.shape[0])
            if sum(len(b) for b in boxes):
                with torch.no_grad():
                    t = self._refine(x, boxes)
                s_out = self._refine(x_hat, boxes)
                refine = sum(F.mse_loss(a, b) for a, b in zip(s_out, t, strict=True)) / 2
                total = total + self.refine_weight * refine
        return total

    def _supervised_loss(self, x_hat: Tensor, targets: list[dict]) -> Tensor:
        """MTCNN-style supervision from ground-truth face boxes (see module docstring)."""
        if len(targets) != x_hat.shape[0]:
            raise ValueError(f"{len(targets)} targets for a batch of {x_hat.shape[0]}")
        gts = [
            torch.as_tensor(t["boxes"], dtype=torch.float32, device=x_hat.device).reshape(-1, 4)
            for t in targets
        ]
        total, n_terms = x_hat.new_zeros(()), 0
        for s, xs in self._pyramid(x_hat):
            _, prob, _ = _pnet(self.pnet, xs)
            b, h, w = prob.shape
            cells = _cell_boxes(h, w, s, x_hat.device)
            logp = torch.log(prob.clamp(1e-6, 1 - 1e-6)).reshape(b, -1)
            log1mp = torch.log((1 - prob).clamp(1e-6, 1 - 1e-6)).reshape(b, -1)
            for i, gt in enumerate(gts):
                iou = (
                    box_iou(cells, gt).max(dim=1).values if len(gt) else cells.new_zeros(len(cells))
                )
                pos, neg = iou >= 0.65, iou < 0.3
                # Balance: positives are rare; each class contributes its own mean.
                if pos.any():
                    total = total - logp[i][pos].mean()
                    n_terms += 1
                if neg.any():
                    total = total - log1mp[i][neg].mean()
                    n_terms += 1
        total = total / max(n_terms, 1)
        boxes = [_square(g) for g in gts]
        if self.refine_weight and sum(len(b) for b in boxes):
            r_reg, r_prob, o_reg, o_prob = self._refine(x_hat, boxes)
            refine = (
                -torch.log(r_prob.clamp_min(1e-6)).mean()
                - torch.log(o_prob.clamp_min(1e-6)).mean()
                + 0.5 * (r_reg.pow(2).mean() + o_reg.pow(2).mean())
            )
            total = total + self.refine_weight * refine
        return total

    # -- inference -------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, images: Tensor) -> list[dict[str, Tensor]]:
        check_images(images)
        empty = {
            "boxes": torch.zeros(0, 4),
            "scores": torch.zeros(0),
            "labels": torch.zeros(0, dtype=torch.int64),
        }
        if min(images.shape[-2:]) < self.mtcnn.min_face_size:
            # MTCNN's pyramid starts at 12 / min_face_size: a smaller image has no scale to
            # search (facenet-pytorch raises instead of finding nothing)
            return [dict(empty) for _ in range(len(images))]
        hwc = torch.round(images.clamp(0, 1) * 255.0).permute(0, 2, 3, 1).to(self.device)
        batch_boxes, batch_probs = self.mtcnn.detect(hwc)
        out = []
        for boxes, probs in zip(batch_boxes, batch_probs, strict=True):
            if boxes is None:
                b, p = torch.zeros(0, 4), torch.zeros(0)
            else:
                b = torch.as_tensor(boxes.astype("float32")).reshape(-1, 4)
                p = torch.as_tensor(probs.astype("float32")).reshape(-1)
            out.append({"boxes": b, "scores": p, "labels": torch.ones(len(b), dtype=torch.int64)})
        return out

    @torch.no_grad()
    def features(self, images: Tensor) -> list[Tensor]:
        """PNet's last feature map (32 channels) at each pyramid scale."""
        check_images(images)
        return [_pnet(self.pnet, xs)[2] for _, xs in self._pyramid(images.to(self.device))]
