"""The scorer benchmarks' images: N copies of the photos of fixtures/mtcnn (several sizes) under WORK/run/images/set,
each with a prompt, and the attribute CSVs `popalign evaluate` reads them from (`set.csv`, and `one.csv` with the
first image only, so that loading can be timed apart)."""
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROMPTS = ["a photo of a doctor", "a nurse at work", "a portrait of a ceo in an office", "a chef cooking"]


def write_image_set(work, n):
    images = work / "run" / "images" / "set"
    images.mkdir(parents=True, exist_ok=True)
    photos = sorted((REPO / "fixtures" / "mtcnn").glob("*.png"))
    header = "file,prompt,base_prompt,face_found,gender,gender_p,gender_probs,classifier,error"
    rows = []
    for i in range(n):
        name = f"{i:04d}-{photos[i % len(photos)].name}"
        shutil.copy(photos[i % len(photos)], images / name)
        rows.append(f"images/set/{name},{PROMPTS[i % len(PROMPTS)]},,false,,,,bench,")
    attributes = work / "run" / "attributes"
    attributes.mkdir(parents=True, exist_ok=True)
    (attributes / "set.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    (attributes / "one.csv").write_text(header + "\n" + rows[0] + "\n")
