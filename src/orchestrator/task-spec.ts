/**
 * The normalized task as it travels in `task_created` inputs: every field present, so that the
 * state can be rebuilt from the WAL alone and two runs of the same backlog hash the same.
 */
export interface TaskSpec {
  id: string;
  title: string;
  role: string;
  priority: number;
  depends_on: string[];
  command: string | null;
  prompt: string | null;
  agent: string | null;
  max_retries: number;
  timeout_s: number;
  body: string;
  /**
   * Runs in its own git worktree and merges on success (`task add --worktree`). Present only when
   * true, so the specs of other tasks keep the Python original's fields.
   */
  worktree?: true;
}
