/** One finding of `doctor`: its checks live in several modules, the shape in one place. */
export type Verdict = "pass" | "warn" | "fail";

export interface DoctorCheck {
  name: string;
  ok: boolean;
  verdict: Verdict;
  detail: string;
  fix: string;
}
