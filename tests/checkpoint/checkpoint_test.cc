// The checkpoint format and store on a real file system (a fresh temporary
// directory per test): round trip, retention, torn and corrupt files skipped,
// a foreign job refused, atomicity against a process killed between write and
// rename, and the resume agreement rule.
#include "runtime/checkpoint/checkpoint.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "src/base/byte_io.h"

namespace stella::checkpoint {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::StartsWith;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/stella-ckpt-test-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { std::system(("rm -rf '" + path_ + "'").c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteAll(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  FILE* p = popen(("ls -1 '" + dir + "'").c_str(), "r");
  char line[512];
  while (p != nullptr && std::fgets(line, sizeof(line), p) != nullptr) {
    std::string s(line);
    if (!s.empty() && s.back() == '\n') s.pop_back();
    names.push_back(s);
  }
  if (p != nullptr) pclose(p);
  return names;
}

// Sections like a worker's: a float array and a few scalars, distinct per step.
Sections MakeSections(int64_t step, size_t floats = 1000) {
  Sections s;
  std::vector<float> params(floats);
  std::mt19937 rng(static_cast<unsigned>(step));
  for (auto& v : params) v = std::uniform_real_distribution<float>(-1, 1)(rng);
  ByteWriter w;
  w.Floats(params);
  s.Put("parameters", w.Release());
  ByteWriter l;
  l.I64(step * 7);
  l.F64(0.25);
  s.Put("loop", l.Release());
  s.Put("empty", "");
  return s;
}

StoreOptions Options(const std::string& dir, const std::string& job = "job-a", const std::string& worker = "east/0") {
  StoreOptions o;
  o.dir = dir;
  o.job = job;
  o.worker = worker;
  return o;
}

TEST(CheckpointFormatTest, EncodeDecodeRoundTripKeepsHeaderAndEverySection) {
  CheckpointHeader h;
  h.job = "fashion";
  h.worker = "cloud/3";
  h.step = 1234567;
  const Sections in = MakeSections(5);
  const std::string bytes = EncodeCheckpoint(h, in);
  auto out = DecodeCheckpoint(bytes, "mem");
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(out->first.job, "fashion");
  EXPECT_EQ(out->first.worker, "cloud/3");
  EXPECT_EQ(out->first.step, 1234567);
  EXPECT_EQ(out->first.format_version, kFormatVersion);
  EXPECT_EQ(out->second.all(), in.all());
  EXPECT_EQ(out->second.content_bytes(), in.content_bytes());
  auto missing = out->second.Get("nope");
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("\"nope\""));
}

// Every strict prefix of a file (a write cut short anywhere) is rejected as
// DataLoss, never accepted and never read out of bounds.
TEST(CheckpointFormatTest, EveryTruncationIsDataLoss) {
  CheckpointHeader h;
  h.job = "j";
  h.worker = "w/0";
  h.step = 9;
  const std::string bytes = EncodeCheckpoint(h, MakeSections(9, 50));
  for (size_t n = 0; n < bytes.size(); ++n) {
    auto r = DecodeCheckpoint(std::string_view(bytes).substr(0, n), "cut");
    ASSERT_FALSE(r.ok()) << "prefix of " << n << " bytes accepted";
    EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << n << ": " << r.status().ToString();
  }
}

// Flipping any single bit is caught (by a checksum or a structural check).
TEST(CheckpointFormatTest, EverySingleBitFlipIsDetected) {
  CheckpointHeader h;
  h.job = "j";
  h.worker = "w/0";
  h.step = 3;
  const std::string bytes = EncodeCheckpoint(h, MakeSections(3, 20));
  for (size_t i = 0; i < bytes.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string bad = bytes;
      bad[i] = static_cast<char>(bad[i] ^ (1 << bit));
      auto r = DecodeCheckpoint(bad, "flip");
      ASSERT_FALSE(r.ok()) << "flip of byte " << i << " bit " << bit << " accepted";
      // Flipping the version field yields a well-formed file of "another
      // version" (FailedPrecondition); everything else is corruption.
      if (i >= 4 && i < 8) continue;
      EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << i << "/" << bit << ": " << r.status().ToString();
    }
  }
}

TEST(CheckpointFormatTest, AnotherFormatVersionIsRefusedNotSkipped) {
  CheckpointHeader h;
  h.job = "j";
  h.worker = "w/0";
  h.format_version = kFormatVersion + 1;
  auto r = DecodeCheckpoint(EncodeCheckpoint(h, MakeSections(1)), "future");
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(r.status().message(), HasSubstr("format version 2"));
}

TEST(CheckpointStoreTest, SaveLoadRoundTripAndFileNaming) {
  TempDir tmp;
  const std::string dir = WorkerDirectory(tmp.path() + "/ckpt/", "east", 0);
  EXPECT_EQ(dir, tmp.path() + "/ckpt/east-0");
  auto store = CheckpointStore::Create(Options(dir));
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  auto saved = (*store)->Save(100, MakeSections(100));
  ASSERT_TRUE(saved.ok()) << saved.status().ToString();
  EXPECT_EQ(saved->path, dir + "/step-00000000000000000100.ckpt");
  EXPECT_EQ(saved->bytes, ReadAll(saved->path).size());
  EXPECT_GT(saved->seconds, 0);
  EXPECT_THAT(saved->removed, IsEmpty());
  auto loaded = (*store)->Load(100);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(loaded->all(), MakeSections(100).all());
  EXPECT_EQ((*store)->Load(200).status().code(), StatusCode::kNotFound);
  // Nothing but the final file is left behind.
  EXPECT_THAT(ListDir(dir), ElementsAre("step-00000000000000000100.ckpt"));
}

TEST(CheckpointStoreTest, KeepsTheNewestTwoAndScansNewestFirst) {
  TempDir tmp;
  auto store = CheckpointStore::Create(Options(tmp.path() + "/w"));
  ASSERT_TRUE(store.ok());
  for (int64_t step : {10, 20, 30}) ASSERT_TRUE((*store)->Save(step, MakeSections(step)).ok());
  auto saved = (*store)->Save(40, MakeSections(40));
  ASSERT_TRUE(saved.ok());
  EXPECT_THAT(saved->removed, ElementsAre(20));
  auto scan = (*store)->Scan();
  ASSERT_TRUE(scan.ok()) << scan.status().ToString();
  EXPECT_THAT(scan->steps, ElementsAre(40, 30));
  EXPECT_THAT(scan->skipped, IsEmpty());
  EXPECT_EQ(ListDir(tmp.path() + "/w").size(), 2u);
}

TEST(CheckpointStoreTest, TruncatedNewestIsSkippedAndThePreviousOneLoads) {
  TempDir tmp;
  auto store = CheckpointStore::Create(Options(tmp.path()));
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE((*store)->Save(10, MakeSections(10)).ok());
  ASSERT_TRUE((*store)->Save(20, MakeSections(20)).ok());
  const std::string newest = (*store)->PathFor(20);
  const std::string bytes = ReadAll(newest);
  WriteAll(newest, bytes.substr(0, bytes.size() / 2));
  auto scan = (*store)->Scan();
  ASSERT_TRUE(scan.ok()) << scan.status().ToString();
  EXPECT_THAT(scan->steps, ElementsAre(10));
  ASSERT_EQ(scan->skipped.size(), 1u);
  EXPECT_THAT(scan->skipped[0], HasSubstr(newest));
  EXPECT_THAT(scan->skipped[0], HasSubstr("truncated"));
  auto loaded = (*store)->Load(10);
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(loaded->all(), MakeSections(10).all());
  EXPECT_EQ((*store)->Load(20).status().code(), StatusCode::kDataLoss);
}

TEST(CheckpointStoreTest, BadChecksumIsSkipped) {
  TempDir tmp;
  auto store = CheckpointStore::Create(Options(tmp.path()));
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE((*store)->Save(10, MakeSections(10)).ok());
  ASSERT_TRUE((*store)->Save(20, MakeSections(20)).ok());
  const std::string newest = (*store)->PathFor(20);
  std::string bytes = ReadAll(newest);
  bytes[bytes.size() - 100] = static_cast<char>(bytes[bytes.size() - 100] ^ 0x10);  // a parameter bit
  WriteAll(newest, bytes);
  auto scan = (*store)->Scan();
  ASSERT_TRUE(scan.ok());
  EXPECT_THAT(scan->steps, ElementsAre(10));
  ASSERT_EQ(scan->skipped.size(), 1u);
  EXPECT_THAT(scan->skipped[0], HasSubstr("payload checksum mismatch"));
}

TEST(CheckpointStoreTest, CheckpointOfAnotherJobOrWorkerIsRefused) {
  TempDir tmp;
  auto other = CheckpointStore::Create(Options(tmp.path(), "job-b", "east/0"));
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE((*other)->Save(10, MakeSections(10)).ok());
  auto mine = CheckpointStore::Create(Options(tmp.path(), "job-a", "east/0"));
  ASSERT_TRUE(mine.ok());
  auto scan = (*mine)->Scan();
  EXPECT_EQ(scan.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(scan.status().message(), HasSubstr("job \"job-b\""));
  EXPECT_THAT(scan.status().message(), HasSubstr("refusing"));
  EXPECT_EQ((*mine)->Load(10).status().code(), StatusCode::kFailedPrecondition);
  auto wrong_worker = CheckpointStore::Create(Options(tmp.path(), "job-b", "west/0"));
  ASSERT_TRUE(wrong_worker.ok());
  EXPECT_EQ((*wrong_worker)->Scan().status().code(), StatusCode::kFailedPrecondition);
}

TEST(CheckpointStoreTest, MissingDirectoryScansEmptyAndCreateValidates) {
  TempDir tmp;
  auto store = CheckpointStore::Create(Options(tmp.path() + "/a/b/c"));
  ASSERT_TRUE(store.ok());
  auto scan = (*store)->Scan();
  ASSERT_TRUE(scan.ok());
  EXPECT_THAT(scan->steps, IsEmpty());
  StoreOptions bad = Options(tmp.path());
  bad.keep = 0;
  EXPECT_THAT(CheckpointStore::Create(bad).status().message(), HasSubstr("keep must be >= 1, got 0"));
  bad = Options("");
  EXPECT_EQ(CheckpointStore::Create(bad).status().code(), StatusCode::kInvalidArgument);
  WriteAll(tmp.path() + "/file", "x");
  auto not_dir = CheckpointStore::Create(Options(tmp.path() + "/file"));
  EXPECT_FALSE(not_dir.ok());
  EXPECT_THAT(not_dir.status().message(), HasSubstr("spec.checkpoint.path"));
}

// A process killed (SIGKILL, a real crash) after writing and fsyncing the
// temporary file but before the rename leaves the previous checkpoint intact
// and loadable, the half-done one invisible, and the next save cleans up.
TEST(CheckpointStoreTest, CrashBetweenWriteAndRenameLeavesThePreviousCheckpointIntact) {
  TempDir tmp;
  {
    auto store = CheckpointStore::Create(Options(tmp.path()));
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->Save(10, MakeSections(10)).ok());
  }
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    StoreOptions o = Options(tmp.path());
    o.before_rename = [](const std::string&) { raise(SIGKILL); };
    auto store = CheckpointStore::Create(o);
    if (store.ok()) (*store)->Save(20, MakeSections(20)).status().IgnoreError();
    _exit(0);  // not reached: the hook killed the process
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "the writer was not killed mid-save";
  // The temporary file is there, complete, but under a name nobody reads.
  EXPECT_THAT(ListDir(tmp.path()),
              ElementsAre("step-00000000000000000010.ckpt", StartsWith("step-00000000000000000020.ckpt.tmp")));
  auto store = CheckpointStore::Create(Options(tmp.path()));
  ASSERT_TRUE(store.ok());
  auto scan = (*store)->Scan();
  ASSERT_TRUE(scan.ok());
  EXPECT_THAT(scan->steps, ElementsAre(10));
  EXPECT_THAT(scan->skipped, IsEmpty());
  auto loaded = (*store)->Load(10);
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(loaded->all(), MakeSections(10).all());
  ASSERT_TRUE((*store)->Save(30, MakeSections(30)).ok());
  EXPECT_THAT(ListDir(tmp.path()), ElementsAre("step-00000000000000000010.ckpt", "step-00000000000000000030.ckpt"));
}

TEST(CheckpointAgreementTest, NewestStepEveryWorkerHolds) {
  EXPECT_EQ(NewestCommonStep({{40, 30}, {40, 30}}), 40);
  EXPECT_EQ(NewestCommonStep({{40, 30}, {30, 20}}), 30);  // one worker died before writing 40
  EXPECT_EQ(NewestCommonStep({{40, 20}, {30}}), -1);      // nothing in common: start over
  EXPECT_EQ(NewestCommonStep({{40, 30}, {}}), -1);        // a worker with no checkpoint
  EXPECT_EQ(NewestCommonStep({{7}}), 7);
  EXPECT_EQ(NewestCommonStep({}), -1);
}

// The float encoding survives a mean all-reduce (sum, then * (1/world) in
// float) exactly, for any world size and steps up to 2^48 - 2.
TEST(CheckpointAgreementTest, StepsSurviveAFloatMeanAllReduce) {
  const std::vector<std::vector<int64_t>> lists = {
      {0}, {281474976710654LL, 123456789012LL}, {}, {4095, 4096, 16777217}, {1000000, 999000}, {5}, {6}};
  const size_t slots = 3;
  for (int world = 1; world <= static_cast<int>(lists.size()); ++world) {
    std::vector<float> sum(static_cast<size_t>(world) * slots * kFloatsPerStep, 0.0f);
    for (int w = 0; w < world; ++w) {
      std::vector<float> mine(sum.size(), 0.0f);
      StepsToFloats(lists[static_cast<size_t>(w)], slots,
                    mine.data() + static_cast<size_t>(w) * slots * kFloatsPerStep);
      for (size_t i = 0; i < sum.size(); ++i) sum[i] += mine[i];
    }
    const float inv = 1.0f / static_cast<float>(world);
    for (float& v : sum) v *= inv;
    for (int w = 0; w < world; ++w) {
      EXPECT_EQ(FloatsToSteps(sum.data() + static_cast<size_t>(w) * slots * kFloatsPerStep, slots, world),
                lists[static_cast<size_t>(w)])
          << "world " << world << " worker " << w;
    }
  }
}

}  // namespace
}  // namespace stella::checkpoint
